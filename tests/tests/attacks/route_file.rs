//! App secrets in a route file: a blank entry is dropped (it would otherwise make an
//! empty-key HMAC a valid signature), and a list with no secret left stops the
//! gateway at start with one line saying why.

use flowgate_e2e::spawned::{FlowService, Gateway, GatewayOptions, key_file};
use flowgate_e2e::whatsapp::{Client, sign};
use flowgate_e2e::{Alpn, whatsapp};
use serde_json::json;

fn route(app_secrets: &str) -> String {
    format!(
        "[[route]]\npath = \"/whatsapp\"\nmode = \"meta\"\nprivate_keys = [{:?}]\napp_secrets = {app_secrets}\n",
        key_file("pkcs1.pem").display().to_string()
    )
}

/// `app_secrets = ["", "s1", " "]`: requests signed with an empty secret are 432, and
/// a real request signed with `s1` is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blank_app_secret_is_dropped() {
    let service = FlowService::start().await;
    let gateway = Gateway::start(
        &service.url(),
        GatewayOptions::default().route_file(route(r#"["", "s1", " "]"#)),
    )
    .await;
    let client = gateway.client(Alpn::Both);
    let public = std::fs::read_to_string(key_file("pkcs1.pub.pem")).unwrap();
    let sealed = Client::new(&public).seal(&whatsapp("INIT", "real-user", "", json!({})));
    let send = |secret: &'static str| {
        let request = client
            .post(gateway.url("/whatsapp"))
            .header("content-type", "application/json")
            .header("x-hub-signature-256", sign(secret, &sealed.body))
            .body(sealed.body.clone());
        async move { request.send().await.expect("the gateway answers") }
    };
    for blank in ["", " "] {
        let refused = send(blank).await;
        assert_eq!(refused.status(), 432, "signed with {blank:?}");
    }
    let served = send("s1").await;
    assert_eq!(served.status(), 200);
    let answer = sealed.open(&served.text().await.unwrap());
    assert_eq!(answer["screen"], "WELCOME_SCREEN", "{answer}");
}

/// `app_secrets = []` or a list of blanks: exit status 2 and one line naming the
/// file, the route and the reason.
#[test]
fn an_app_secret_list_with_no_secret_is_refused_at_start() {
    for list in ["[]", r#"["", "  "]"#] {
        let (status, stderr) = Gateway::fail_to_start(
            "http://127.0.0.1:9",
            GatewayOptions::default().route_file(route(list)),
        );
        assert_eq!(status.code(), Some(2), "{list}: {stderr}");
        let lines: Vec<_> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{list}: {stderr}");
        assert!(
            lines[0].contains("FLOWGATE_CONFIG route 1 (/whatsapp)")
                && lines[0].contains("routes.toml")
                && lines[0].contains("app_secrets holds no secret"),
            "{list}: {stderr}"
        );
    }
}
