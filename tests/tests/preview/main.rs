//! Browser tests of the preview page (`/preview/` on the admin listener): headless
//! Chromium drives the page, the page drives the gateway's preview API, the gateway
//! calls a real flow service. One browser per test; the `browser` test group in
//! `.config/nextest.toml` runs them one at a time.
//!
//! They also save a screenshot of each reference flow's first screen under
//! `target/preview-screenshots/` (`docs/preview.png` is one of them).

mod browser;

use std::path::PathBuf;

use browser::Browser;
use flowgate_e2e::{Gateway, GatewayOptions, Probe, Service};
use serde_json::{Value, json};

/// A flow service with the reference flows, and a gateway in front of it whose admin
/// listener serves the preview.
async fn stack() -> (Service, Gateway) {
    let service = Service::start(Probe::default()).await;
    let gateway = Gateway::start(GatewayOptions {
        preview: true,
        ..GatewayOptions::new(service.url())
    })
    .await;
    (service, gateway)
}

/// Opens the page and starts `flow` on `route` (`/flow-endpoint` reaches the default
/// flow, `signup`; `/flows/{flow}` any flow by name).
async fn open(browser: &Browser, gateway: &Gateway, route: &str, flow: &str) {
    browser
        .client
        .goto(&format!("{}/preview/", gateway.admin_base))
        .await
        .expect("the preview page loads");
    browser
        .click(&format!(
            "button[data-testid=flow][data-route='{route}'][data-flow='{flow}']"
        ))
        .await;
}

/// `target/preview-screenshots/<flow>.png`, in `CARGO_TARGET_DIR` when set.
fn screenshot_path(flow: &str) -> PathBuf {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    };
    target
        .join("preview-screenshots")
        .join(format!("{flow}.png"))
}

/// The `kind` of every entry in the side panel, in order.
async fn log_kinds(browser: &Browser) -> Vec<String> {
    let kinds = browser
        .js("return [...document.querySelectorAll('[data-testid=log-kind]')].map(e => e.textContent);")
        .await;
    serde_json::from_value(kinds).unwrap()
}

/// Loads a Flow JSON file through the page's file input.
async fn load_file(browser: &Browser, file: &std::path::Path) {
    browser
        .find("[data-testid=flow-file]")
        .await
        .send_keys(file.to_str().unwrap())
        .await
        .unwrap();
}

/// Waits for the log's second INIT: the first run's, then a loaded file's.
async fn second_init(browser: &Browser) {
    browser
        .until(
            "the INIT of the loaded file",
            "return [...document.querySelectorAll('[data-testid=log-entry][data-kind=INIT]')].length === 2;",
        )
        .await;
}

/// The request of the last log entry, as JSON.
async fn last_request(browser: &Browser) -> Value {
    let text = browser
        .js("const r = [...document.querySelectorAll('[data-testid=log-request]')]; return r.length ? r[r.length - 1].textContent : null;")
        .await;
    serde_json::from_str(text.as_str().expect("a request in the log")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signup_journey_with_errors_back_and_completion() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let (_service, gateway) = stack().await;
    open(&browser, &gateway, "/flow-endpoint", "signup").await;

    // INIT: the welcome screen, drawn from the Flow JSON with the answer's data.
    browser.screen("WELCOME_SCREEN").await;
    assert_eq!(browser.text("[data-testid=screen-title]").await, "Sign up");
    assert!(
        browser
            .text("[data-testid=screen]")
            .await
            .contains(flow_service::flows::signup::WELCOME_MESSAGE)
    );
    let token = browser
        .find("[data-testid=flow-token]")
        .await
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    assert!(
        token.starts_with("preview-"),
        "a fresh random token: {token}"
    );
    assert_eq!(log_kinds(&browser).await, ["INIT"]);
    browser.screenshot(&screenshot_path("signup")).await;

    // A required field left empty: the page stops the submit, nothing is sent.
    browser.click("[data-testid=footer]").await;
    assert_eq!(browser.text("[data-testid=error-email]").await, "Required");
    assert_eq!(browser.log_entries().await, 1, "nothing sent");

    // An invalid email: the service answers the same screen with `error_message`.
    browser
        .fill("[data-testid=field-email]", "not-an-email")
        .await;
    browser.click("[data-testid=footer]").await;
    let banner = browser
        .until(
            "the error banner",
            "const b = document.querySelector('[data-testid=error-banner]'); return !b.hidden && b.textContent;",
        )
        .await;
    assert_eq!(banner, flow_service::flows::signup::INVALID_EMAIL);
    assert_eq!(log_kinds(&browser).await, ["INIT", "data_exchange"]);
    let request = last_request(&browser).await;
    assert_eq!(request["screen"], "WELCOME_SCREEN");
    assert_eq!(request["data"], json!({"email": "not-an-email"}));
    assert_eq!(request["flow_token"], token.as_str());

    // A valid one: the confirmation screen, bound to the answer's data.
    browser
        .fill("[data-testid=field-email]", "ada@example.com")
        .await;
    browser.click("[data-testid=footer]").await;
    browser.screen("CONFIRMATION_SCREEN").await;
    assert!(
        browser
            .text("[data-testid=screen]")
            .await
            .contains("ada@example.com")
    );
    assert!(
        browser
            .js("return document.querySelector('[data-testid=error-banner]').hidden;")
            .await
            .as_bool()
            .unwrap(),
        "the error is gone"
    );

    // Back: CONFIRMATION_SCREEN has no refresh_on_back, so back is local and keeps
    // what was typed.
    browser.click("[data-testid=back]").await;
    browser.screen("WELCOME_SCREEN").await;
    assert_eq!(
        browser
            .find("[data-testid=field-email]")
            .await
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("ada@example.com")
    );
    assert_eq!(
        log_kinds(&browser).await.last().map(String::as_str),
        Some("back"),
        "no request for a local back"
    );

    // Forward again and sign up: SUCCESS with the params.
    browser.click("[data-testid=footer]").await;
    browser.screen("CONFIRMATION_SCREEN").await;
    browser.click("[data-testid=footer]").await;
    browser.screen("SUCCESS").await;
    assert_eq!(
        browser
            .find("[data-testid=complete]")
            .await
            .attr("data-via")
            .await
            .unwrap()
            .as_deref(),
        Some("SUCCESS")
    );
    assert_eq!(
        browser
            .text("[data-testid=complete-params] dd[data-param=email]")
            .await,
        "ada@example.com"
    );
    let params: Value =
        serde_json::from_str(&browser.text("[data-testid=complete-json]").await).unwrap();
    assert_eq!(params["email"], "ada@example.com", "{params}");
    assert_eq!(
        browser
            .js("return document.querySelectorAll('[data-testid=violation]').length;")
            .await,
        0,
        "the reference flow answers within its Flow JSON"
    );

    // A Flow JSON file run next starts on a fresh token: the last one is completed.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("signup.json");
    std::fs::write(&file, flow_service::flows::signup::FLOW_JSON).unwrap();
    load_file(&browser, &file).await;
    second_init(&browser).await;
    browser.screen("WELCOME_SCREEN").await;
    let status = browser
        .js("return [...document.querySelectorAll('[data-testid=log-status]')].pop().textContent;")
        .await;
    assert_eq!(status, "200");
    let fresh = last_request(&browser).await;
    assert_ne!(fresh["flow_token"], token.as_str(), "a fresh token");

    // A token the user typed is the one a loaded file runs on.
    browser
        .fill("[data-testid=flow-token]", "typed-by-hand-1")
        .await;
    load_file(&browser, &file).await;
    browser
        .until(
            "the INIT of the file loaded again",
            "return [...document.querySelectorAll('[data-testid=log-entry][data-kind=INIT]')].length === 3;",
        )
        .await;
    assert_eq!(
        last_request(&browser).await["flow_token"],
        "typed-by-hand-1"
    );
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn booking_dropdowns_get_their_options_from_the_service() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let (_service, gateway) = stack().await;
    open(&browser, &gateway, "/flows/{flow}", "booking").await;
    browser.screen("APPOINTMENT").await;
    browser.screenshot(&screenshot_path("booking")).await;

    // Nothing chosen: only departments; the other lists are disabled and empty.
    let options = |name: &str| {
        format!(
            "const s = document.querySelector('[data-testid=field-{name}]'); \
             return s.disabled ? null : [...s.options].map(o => o.value).filter(v => v);"
        )
    };
    assert_eq!(
        browser.js(&options("department")).await,
        json!(["cardiology", "dermatology", "paediatrics"])
    );
    assert_eq!(browser.js(&options("location")).await, Value::Null);

    // Each choice is a data_exchange; the answer enables the next list with its options.
    browser
        .select("[data-testid=field-department]", "cardiology")
        .await;
    let locations = browser.until("locations", &options("location")).await;
    assert_eq!(locations, json!(["central", "north"]));
    let request = last_request(&browser).await;
    assert_eq!(request["action"], "data_exchange");
    assert_eq!(
        request["data"],
        json!({"trigger": "department_selected", "department": "cardiology"})
    );

    browser
        .select("[data-testid=field-location]", "central")
        .await;
    let dates = browser.until("dates", &options("date")).await;
    assert_eq!(dates, json!(["2026-03-02", "2026-03-04"]));
    browser
        .select("[data-testid=field-date]", "2026-03-02")
        .await;
    let times = browser.until("times", &options("time")).await;
    assert_eq!(times, json!(["09:00", "09:30", "10:00"]));
    assert_eq!(
        browser
            .js("return document.querySelector('[data-testid=field-department]').value;")
            .await,
        "cardiology",
        "earlier choices survive the redraw"
    );

    // Continue to DETAILS; its refresh_on_back makes back a BACK request, answered
    // with APPOINTMENT afresh.
    browser.select("[data-testid=field-time]", "09:30").await;
    browser.click("[data-testid=footer]").await;
    browser.screen("DETAILS").await;
    assert!(
        browser
            .text("[data-testid=screen]")
            .await
            .contains("Cardiology at Central Clinic")
    );
    browser.click("[data-testid=back]").await;
    browser.screen("APPOINTMENT").await;
    let request = last_request(&browser).await;
    assert_eq!(request["action"], "BACK");
    assert_eq!(request["screen"], "DETAILS");
    assert_eq!(browser.js(&options("location")).await, Value::Null);
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn violations_show_in_red_in_the_panel() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let (_service, gateway) = stack().await;
    open(&browser, &gateway, "/flow-endpoint", "signup").await;
    browser.screen("WELCOME_SCREEN").await;

    // A Flow JSON file whose first screen is named differently from what the service
    // answers: the file passes the check, the INIT answer breaks it.
    let mut renamed: Value = serde_json::from_str(flow_service::flows::signup::FLOW_JSON).unwrap();
    renamed["screens"][0]["id"] = json!("HELLO");
    renamed["routing_model"] = json!({"HELLO": ["CONFIRMATION_SCREEN"], "CONFIRMATION_SCREEN": []});
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("renamed.json");
    std::fs::write(&file, renamed.to_string()).unwrap();
    load_file(&browser, &file).await;
    second_init(&browser).await;
    let kinds = log_kinds(&browser).await;
    assert_eq!(
        kinds,
        ["INIT", "check", "INIT"],
        "the file is checked before it starts"
    );
    let check_violations = browser
        .js("const e = document.querySelectorAll('[data-testid=log-entry]')[1]; return e.querySelectorAll('[data-testid=violation]').length;")
        .await;
    assert_eq!(check_violations, 0, "the renamed file itself is valid");
    let violation = browser
        .until(
            "a violation of the INIT answer",
            "const e = [...document.querySelectorAll('[data-testid=log-entry]')][2]; \
             const v = e.querySelector('[data-testid=violation]'); \
             return v && {text: v.textContent, color: getComputedStyle(v).color};",
        )
        .await;
    assert!(
        violation["text"]
            .as_str()
            .unwrap()
            .contains("WELCOME_SCREEN"),
        "{violation}"
    );
    assert_eq!(violation["color"], "rgb(198, 40, 40)", "in red");
    // The phone says the answer's screen is not in the file.
    assert!(
        browser
            .text("[data-testid=unknown-screen]")
            .await
            .contains("WELCOME_SCREEN")
    );

    // A file that breaks the rules on its own: /check lists the violation, in red.
    let mut broken = renamed.clone();
    broken["routing_model"] = json!({"HELLO": ["NOWHERE"], "CONFIRMATION_SCREEN": []});
    let file = dir.path().join("broken.json");
    std::fs::write(&file, broken.to_string()).unwrap();
    load_file(&browser, &file).await;
    let violation = browser
        .until(
            "a violation of the check",
            "const e = [...document.querySelectorAll('[data-testid=log-entry][data-kind=check]')][1]; \
             const v = e && e.querySelector('[data-testid=violation]'); \
             return v && {text: v.textContent, color: getComputedStyle(v).color};",
        )
        .await;
    assert!(
        violation["text"].as_str().unwrap().contains("NOWHERE"),
        "{violation}"
    );
    assert_eq!(violation["color"], "rgb(198, 40, 40)", "in red");

    // A file whose last step sends what the flow refuses: the endpoint's 400 and its
    // error show on the phone and, in red, in the panel.
    let mut refused: Value = serde_json::from_str(flow_service::flows::signup::FLOW_JSON).unwrap();
    refused["screens"][1]["layout"]["children"][2]["on-click-action"]["payload"] =
        json!({"email": "not-an-email"});
    let file = dir.path().join("refused.json");
    std::fs::write(&file, refused.to_string()).unwrap();
    load_file(&browser, &file).await;
    browser.screen("WELCOME_SCREEN").await;
    browser
        .fill("[data-testid=field-email]", "ada@example.com")
        .await;
    browser.click("[data-testid=footer]").await;
    browser.screen("CONFIRMATION_SCREEN").await;
    browser.click("[data-testid=footer]").await;
    let banner = browser
        .until(
            "the endpoint's error",
            "const b = document.querySelector('[data-testid=error-banner]'); return !b.hidden && b.textContent;",
        )
        .await;
    assert!(
        banner.as_str().unwrap().starts_with("rejected: "),
        "{banner}"
    );
    let status = browser
        .js(
            "const s = [...document.querySelectorAll('[data-testid=log-status]')].pop(); \
             return {text: s.textContent, color: getComputedStyle(s).color};",
        )
        .await;
    assert_eq!(status, json!({"text": "400", "color": "rgb(198, 40, 40)"}));
    browser.screen("CONFIRMATION_SCREEN").await;
    browser.close().await;
}

/// A flow service with none of the optional RPCs: the preview cannot list its flows
/// nor fetch their Flow JSON (every generated default answers UNIMPLEMENTED).
struct Bare;

#[tonic::async_trait]
impl flowgate_proto::v1::flow_service_server::FlowService for Bare {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_without_endpoint_draws_every_component_and_runs_locally() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(flowgate_proto::v1::flow_service_server::FlowServiceServer::new(Bare))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let gateway = Gateway::start(GatewayOptions {
        preview: true,
        ..GatewayOptions::new(format!("http://{addr}"))
    })
    .await;
    // Without the slash: redirected to the page.
    browser
        .client
        .goto(&format!("{}/preview", gateway.admin_base))
        .await
        .unwrap();
    // The service lists no flows: each route says why, and a file is the way in.
    let error = browser.text("[data-testid=flows-error]").await;
    assert!(error.contains("unimplemented"), "{error}");
    assert_eq!(
        browser.client.current_url().await.unwrap().path(),
        "/preview/"
    );
    assert_eq!(
        browser
            .js("return document.querySelectorAll('button[data-testid=flow]').length;")
            .await,
        0
    );
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/preview-gallery.json");
    load_file(&browser, &file).await;

    // No data_api_version: the first screen, its data from `__example__`, no request.
    browser.screen("GALLERY").await;
    assert_eq!(log_kinds(&browser).await, ["check", "local"]);
    let screen = browser.text("[data-testid=screen]").await;
    for shown in [
        "Hello Ada",
        "A subheading",
        "A caption",
        "Not large",
        "More to see",
        "Unsupported component: PhotoPicker",
        "<img src=x onerror=alert(1)>",
        "What friends call you",
        "Too young",
    ] {
        assert!(screen.contains(shown), "`{shown}` in:\n{screen}");
    }
    let drawn = browser
        .js("const s = document.querySelector('[data-testid=screen]'); return { \
             bold: s.querySelector('strong')?.textContent, italic: s.querySelector('em')?.textContent, \
             list: [...s.querySelectorAll('.rich li')].map(l => l.textContent), \
             images: [...s.querySelectorAll('img')].map(i => i.src.slice(0, 22) + ' ' + i.alt), \
             nick: s.querySelector('[data-testid=field-nick]').value, \
             nickLabel: s.querySelector('label[for=' + s.querySelector('[data-testid=field-nick]').id + ']')?.textContent, \
             fruits: [...s.querySelectorAll('[data-testid=field-fruit] option')].map(o => o.textContent), \
             types: ['age', 'when'].map(n => s.querySelector('[data-testid=field-' + n + ']').type), \
             area: s.querySelector('[data-testid=field-about]').tagName };")
        .await;
    assert_eq!(
        drawn,
        json!({
            "bold": "bold", "italic": "italic", "list": ["one", "two"],
            "images": ["data:image/png;base64, A green square"],
            "nick": "Ada", "nickLabel": "Nickname", "fruits": ["Select…", "Apple", "Banana"],
            "types": ["number", "date"], "area": "TEXTAREA",
        }),
        "init-values, data-source, markdown as nodes (the <img> in RichText stays text)"
    );

    // A text field is not redrawn while typed in; leaving it redraws what depends on it,
    // and the focus lands on the field it moved to.
    browser
        .find("[data-testid=field-age]")
        .await
        .send_keys("42")
        .await
        .unwrap();
    assert!(
        !browser
            .text("[data-testid=screen]")
            .await
            .contains("An adult")
    );
    browser.click("[data-testid=field-about]").await;
    browser
        .until(
            "the If to follow the age",
            "return document.querySelector('[data-testid=screen]').innerText.includes('An adult');",
        )
        .await;
    assert_eq!(
        browser
            .js("return document.activeElement.dataset.testid;")
            .await,
        "field-about"
    );

    // If follows the form; navigate carries its payload; back is local and keeps the form.
    browser.click("[data-testid=option-size-large]").await;
    browser
        .until(
            "the If to follow the radio",
            "return document.querySelector('[data-testid=screen]').innerText.includes('Large chosen');",
        )
        .await;
    browser.click("[data-component=EmbeddedLink]").await;
    browser.screen("DETAILS").await;
    assert!(
        browser
            .text("[data-testid=screen]")
            .await
            .contains("From Ada; size on the first screen: large")
    );
    browser.click("[data-testid=back]").await;
    browser.screen("GALLERY").await;
    assert!(
        browser
            .js("return document.querySelector('[data-testid=option-size-large]').checked;")
            .await
            .as_bool()
            .unwrap()
    );

    // A required OptIn left unticked blocks `complete`; ticked, the payload shows.
    browser.click("[data-testid=footer]").await;
    assert_eq!(browser.text("[data-testid=error-terms]").await, "Required");
    browser.click("[data-testid=field-terms]").await;
    browser.click("[data-testid=option-extras-lemon]").await;
    browser.click("[data-testid=footer]").await;
    browser.screen("SUCCESS").await;
    let params: Value =
        serde_json::from_str(&browser.text("[data-testid=complete-json]").await).unwrap();
    assert_eq!(
        params,
        json!({"nick": "Ada", "size": "large", "terms": true, "extras": ["lemon"]})
    );
    assert_eq!(
        log_kinds(&browser).await,
        ["check", "local", "navigate", "back", "complete"],
        "nothing reached the flow service"
    );

    // The condition language of `If` and `visible`.
    for (expression, expected) in [
        ("${form.a} == 'x' && !${data.off}", json!(true)),
        ("${form.n} > 3 || ${form.n} < 0", json!(true)),
        ("(${form.n} >= 10) != false", json!(false)),
        ("${data.missing} == null", json!(true)),
        ("!(${form.a} != \"x\")", json!(true)),
    ] {
        let script = format!(
            "return window.flowgatePreview.evaluate({}, {{off: false}}, {{a: 'x', n: '5'}});",
            json!(expression)
        );
        assert_eq!(browser.js(&script).await, expected, "{expression}");
    }
    let refused = browser
        .js("try { window.flowgatePreview.evaluate('${form.a} +', {}, {}); return 'accepted'; } catch (e) { return 'refused'; }")
        .await;
    assert_eq!(refused, "refused");
    browser.close().await;
}
