//! `booking`: appointment booking, reached at the gateway's `/flows/booking`.
//!
//! `APPOINTMENT` → `DETAILS` → `SUMMARY` → completion (see `flows/booking.json`):
//!
//! - `APPOINTMENT` offers departments; choosing one asks (`data_exchange` with
//!   `trigger`) for the locations that department sees patients at, a location for its
//!   dates, a date for its times. Continuing with all four moves on to `DETAILS`.
//! - `DETAILS` takes name, email, phone and optional notes, each checked here.
//! - `SUMMARY` shows the booking; confirming completes with every choice as params.
//!
//! The service keeps no session, so choices travel forward in screen data
//! (`${data.…}` payloads in the Flow JSON) and are checked again at every step: a
//! payload that no earlier answer could have produced is refused (400).
//!
//! `DETAILS` has `refresh_on_back`: going back to `APPOINTMENT` fetches the options
//! afresh, since a time offered earlier may be gone by then. Every `BACK` starts over
//! on `APPOINTMENT`, which the routing model allows from any screen.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::contract::FlowJson;
use crate::flows::signup::is_valid_email;
use crate::router::Router;
use crate::sdk::{FlowError, Outcome, Request};

pub const APPOINTMENT: &str = "APPOINTMENT";
pub const DETAILS: &str = "DETAILS";
pub const SUMMARY: &str = "SUMMARY";

/// The Flow JSON a business uploads to WhatsApp for this flow.
pub const FLOW_JSON: &str = include_str!("../../flows/booking.json");

pub const CHOOSE_DEPARTMENT: &str = "Please choose a department.";
pub const CHOOSE_LOCATION: &str = "Please choose a location.";
pub const CHOOSE_DATE: &str = "Please choose a date.";
pub const CHOOSE_TIME: &str = "Please choose a time.";
pub const UNKNOWN_DEPARTMENT: &str = "Please choose a department from the list.";
pub const UNKNOWN_LOCATION: &str =
    "That department does not see patients there. Please choose another location.";
pub const UNKNOWN_DATE: &str = "There are no appointments on that date. Please choose another.";
pub const UNKNOWN_TIME: &str = "That time is no longer available. Please choose another.";
pub const INVALID_NAME: &str = "Please enter your name.";
pub const INVALID_EMAIL: &str = "Please enter a valid email address.";
pub const INVALID_PHONE: &str =
    "Please enter a phone number of 7 to 15 digits, optionally starting with +.";
pub const NOTES_TOO_LONG: &str = "Notes can be at most 500 characters.";

/// The longest notes accepted, in characters (the Flow JSON's `max-length`).
pub const MAX_NOTES: usize = 500;
/// The longest name accepted, in characters.
pub const MAX_NAME: usize = 100;

/// Something the user picks from a list: its id travels, its title is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub id: String,
    pub title: String,
}

impl Item {
    fn new(id: &str, title: &str) -> Self {
        Self {
            id: id.into(),
            title: title.into(),
        }
    }

    fn json(&self) -> Value {
        json!({"id": self.id, "title": self.title})
    }
}

/// Times a department sees patients at a location on a date.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Session {
    department: String,
    location: String,
    date: String,
    times: Vec<String>,
}

/// What can be booked: departments, locations, dates, and the sessions that tie them
/// together. Plain data, no clock: a real deployment fills it from its scheduling
/// system, tests from a fixed list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalogue {
    departments: Vec<Item>,
    locations: Vec<Item>,
    dates: Vec<Item>,
    sessions: Vec<Session>,
}

impl Catalogue {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn department(mut self, id: &str, title: &str) -> Self {
        self.departments.push(Item::new(id, title));
        self
    }

    pub fn location(mut self, id: &str, title: &str) -> Self {
        self.locations.push(Item::new(id, title));
        self
    }

    /// A date: `id` as sent (e.g. `2026-03-02`), `title` as shown.
    pub fn date(mut self, id: &str, title: &str) -> Self {
        self.dates.push(Item::new(id, title));
        self
    }

    /// `department` sees patients at `location` on `date` at `times` (e.g. `09:30`).
    pub fn session(mut self, department: &str, location: &str, date: &str, times: &[&str]) -> Self {
        self.sessions.push(Session {
            department: department.into(),
            location: location.into(),
            date: date.into(),
            times: times.iter().map(|t| (*t).to_owned()).collect(),
        });
        self
    }

    /// The catalogue the reference service runs with: three departments, three
    /// clinics, the first week of March 2026.
    pub fn reference() -> Self {
        Self::new()
            .department("cardiology", "Cardiology")
            .department("dermatology", "Dermatology")
            .department("paediatrics", "Paediatrics")
            .location("central", "Central Clinic")
            .location("north", "North Clinic")
            .location("riverside", "Riverside Clinic")
            .date("2026-03-02", "Mon 2 Mar 2026")
            .date("2026-03-03", "Tue 3 Mar 2026")
            .date("2026-03-04", "Wed 4 Mar 2026")
            .date("2026-03-05", "Thu 5 Mar 2026")
            .session(
                "cardiology",
                "central",
                "2026-03-02",
                &["09:00", "09:30", "10:00"],
            )
            .session("cardiology", "central", "2026-03-04", &["14:00", "14:30"])
            .session("cardiology", "north", "2026-03-03", &["09:00", "11:00"])
            .session("dermatology", "central", "2026-03-03", &["10:00", "10:30"])
            .session(
                "dermatology",
                "riverside",
                "2026-03-05",
                &["15:00", "15:30", "16:00"],
            )
            .session("paediatrics", "north", "2026-03-02", &["08:30", "09:00"])
            .session("paediatrics", "riverside", "2026-03-04", &["13:00"])
            .session(
                "paediatrics",
                "riverside",
                "2026-03-05",
                &["13:00", "13:30"],
            )
    }

    fn sessions<'a>(
        &'a self,
        department: &'a str,
        location: Option<&'a str>,
        date: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Session> + 'a {
        self.sessions.iter().filter(move |s| {
            s.department == department
                && location.is_none_or(|l| s.location == l)
                && date.is_none_or(|d| s.date == d)
                && !s.times.is_empty()
        })
    }

    pub fn departments(&self) -> &[Item] {
        &self.departments
    }

    /// Where `department` sees patients, in catalogue order.
    pub fn locations(&self, department: &str) -> Vec<&Item> {
        self.locations
            .iter()
            .filter(|l| {
                self.sessions(department, Some(&l.id), None)
                    .next()
                    .is_some()
            })
            .collect()
    }

    /// The dates `department` sees patients at `location`, in catalogue order.
    pub fn dates(&self, department: &str, location: &str) -> Vec<&Item> {
        self.dates
            .iter()
            .filter(|d| {
                self.sessions(department, Some(location), Some(&d.id))
                    .next()
                    .is_some()
            })
            .collect()
    }

    /// The times free for `department` at `location` on `date`, in order.
    pub fn times(&self, department: &str, location: &str, date: &str) -> Vec<String> {
        let mut times: Vec<String> = self
            .sessions(department, Some(location), Some(date))
            .flat_map(|s| s.times.iter().cloned())
            .collect();
        times.sort();
        times.dedup();
        times
    }
}

/// How far the user's choice on `APPOINTMENT` is valid.
#[derive(Debug, Default)]
struct Choice<'a> {
    department: Option<&'a Item>,
    location: Option<&'a Item>,
    date: Option<&'a Item>,
    time: Option<String>,
}

impl<'a> Choice<'a> {
    /// Reads department → location → date → time from `request` until one is absent.
    /// A present one that the catalogue does not offer after the earlier ones is an
    /// error, with what was valid before it.
    fn read(catalogue: &'a Catalogue, request: &Request) -> (Self, Option<&'static str>) {
        let mut choice = Choice::default();
        let Some(department) = request.text("department") else {
            return (choice, None);
        };
        let Some(department) = catalogue.departments.iter().find(|d| d.id == department) else {
            return (choice, Some(UNKNOWN_DEPARTMENT));
        };
        choice.department = Some(department);
        let Some(location) = request.text("location") else {
            return (choice, None);
        };
        let locations = catalogue.locations(&department.id);
        let Some(location) = locations.into_iter().find(|l| l.id == location) else {
            return (choice, Some(UNKNOWN_LOCATION));
        };
        choice.location = Some(location);
        let Some(date) = request.text("date") else {
            return (choice, None);
        };
        let dates = catalogue.dates(&department.id, &location.id);
        let Some(date) = dates.into_iter().find(|d| d.id == date) else {
            return (choice, Some(UNKNOWN_DATE));
        };
        choice.date = Some(date);
        let Some(time) = request.text("time") else {
            return (choice, None);
        };
        if !catalogue
            .times(&department.id, &location.id, &date.id)
            .iter()
            .any(|t| t == time)
        {
            return (choice, Some(UNKNOWN_TIME));
        }
        choice.time = Some(time.to_owned());
        (choice, None)
    }

    /// The appointment when everything is chosen, else the first thing still to choose
    /// as a message for the user.
    fn complete(&self) -> Result<Appointment, &'static str> {
        match self {
            Choice {
                department: Some(department),
                location: Some(location),
                date: Some(date),
                time: Some(time),
            } => Ok(Appointment {
                department: (*department).clone(),
                location: (*location).clone(),
                date: (*date).clone(),
                time: time.clone(),
            }),
            Choice {
                department: None, ..
            } => Err(CHOOSE_DEPARTMENT),
            Choice { location: None, .. } => Err(CHOOSE_LOCATION),
            Choice { date: None, .. } => Err(CHOOSE_DATE),
            Choice { time: None, .. } => Err(CHOOSE_TIME),
        }
    }

    /// `APPOINTMENT` with the options that follow from what is chosen so far; the
    /// lists not reachable yet are empty and disabled.
    fn screen(&self, catalogue: &Catalogue) -> Outcome {
        let items = |items: Vec<&Item>| items.into_iter().map(Item::json).collect::<Vec<_>>();
        let locations = self
            .department
            .map(|d| items(catalogue.locations(&d.id)))
            .unwrap_or_default();
        let dates = match (self.department, self.location) {
            (Some(d), Some(l)) => items(catalogue.dates(&d.id, &l.id)),
            _ => Vec::new(),
        };
        let times = match (self.department, self.location, self.date) {
            (Some(d), Some(l), Some(date)) => catalogue
                .times(&d.id, &l.id, &date.id)
                .iter()
                .map(|t| json!({"id": t, "title": t}))
                .collect(),
            _ => Vec::new(),
        };
        Outcome::screen(
            APPOINTMENT,
            json!({
                "departments": items(catalogue.departments.iter().collect()),
                "is_location_enabled": !locations.is_empty(),
                "locations": locations,
                "is_date_enabled": !dates.is_empty(),
                "dates": dates,
                "is_time_enabled": !times.is_empty(),
                "times": times,
            }),
        )
    }
}

/// A complete, valid appointment.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Appointment {
    department: Item,
    location: Item,
    date: Item,
    time: String,
}

impl Appointment {
    /// Reads a complete appointment; a missing or invalid part is the first message.
    fn read(catalogue: &Catalogue, request: &Request) -> Result<Self, &'static str> {
        match Choice::read(catalogue, request) {
            (_, Some(error)) => Err(error),
            (choice, None) => choice.complete(),
        }
    }

    /// Read from a later screen, where the appointment came from an earlier answer:
    /// anything wrong was not sent by a WhatsApp client following the Flow JSON.
    fn carried(catalogue: &Catalogue, request: &Request) -> Result<Self, FlowError> {
        Self::read(catalogue, request).map_err(|reason| {
            FlowError::Invalid(format!(
                "the appointment sent from {} is not bookable: {reason}",
                request.screen
            ))
        })
    }

    fn describe(&self) -> String {
        format!(
            "{} at {}, {}, {}",
            self.department.title, self.location.title, self.date.title, self.time
        )
    }

    /// The fields every later screen carries forward.
    fn fields(&self) -> serde_json::Map<String, Value> {
        let mut fields = serde_json::Map::new();
        fields.insert("appointment".into(), self.describe().into());
        fields.insert("department".into(), self.department.id.clone().into());
        fields.insert("location".into(), self.location.id.clone().into());
        fields.insert("date".into(), self.date.id.clone().into());
        fields.insert("time".into(), self.time.clone().into());
        fields
    }
}

/// The user's details, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Details {
    name: String,
    email: String,
    phone: String,
    notes: String,
}

impl Details {
    fn read(request: &Request) -> Result<Self, &'static str> {
        let name = request.text("name").unwrap_or_default();
        if name.is_empty() || name.chars().count() > MAX_NAME {
            return Err(INVALID_NAME);
        }
        let email = request.text("email").filter(|e| is_valid_email(e));
        let email = email.ok_or(INVALID_EMAIL)?;
        let phone = request
            .text("phone")
            .and_then(normalize_phone)
            .ok_or(INVALID_PHONE)?;
        let notes = request.text("notes").unwrap_or_default();
        if notes.chars().count() > MAX_NOTES {
            return Err(NOTES_TOO_LONG);
        }
        Ok(Details {
            name: name.into(),
            email: email.into(),
            phone,
            notes: notes.into(),
        })
    }

    fn describe(&self) -> String {
        let mut text = format!("{}\n{}\n{}", self.name, self.email, self.phone);
        if !self.notes.is_empty() {
            text.push_str("\n\n");
            text.push_str(&self.notes);
        }
        text
    }
}

/// A phone number as `+` (optional) and 7 to 15 digits; spaces, dashes, dots and
/// parentheses between digits are dropped, as people type them.
pub fn normalize_phone(phone: &str) -> Option<String> {
    let (plus, rest) = match phone.strip_prefix('+') {
        Some(rest) => ("+", rest),
        None => ("", phone),
    };
    let mut digits = String::with_capacity(rest.len());
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return None,
        }
    }
    (7..=15)
        .contains(&digits.len())
        .then(|| format!("{plus}{digits}"))
}

/// The booking flow over the reference catalogue.
pub fn flow() -> Router {
    with_catalogue(Catalogue::reference())
}

/// The booking flow over `catalogue`.
///
/// # Panics
///
/// When the embedded `flows/booking.json` is not a valid Flow JSON, which its tests
/// rule out: a broken build fails at start, never on a request.
pub fn with_catalogue(catalogue: Catalogue) -> Router {
    let flow_json = FlowJson::parse(FLOW_JSON)
        .unwrap_or_else(|e| panic!("flow-service/flows/booking.json: {e}"));
    let catalogue = Arc::new(catalogue);
    Router::new(flow_json)
        .on_init(with(&catalogue, start))
        .on_back(DETAILS, with(&catalogue, start))
        .on_exchange(APPOINTMENT, with(&catalogue, appointment))
        .on_exchange(DETAILS, with(&catalogue, details))
        .on_exchange(SUMMARY, with(&catalogue, confirm))
}

/// A handler that is given the catalogue along with each request.
fn with<H, F>(
    catalogue: &Arc<Catalogue>,
    handler: H,
) -> impl Fn(Request) -> F + Send + Sync + 'static
where
    H: Fn(Arc<Catalogue>, Request) -> F + Send + Sync + 'static,
{
    let catalogue = catalogue.clone();
    move |request| handler(catalogue.clone(), request)
}

/// `APPOINTMENT` with nothing chosen yet.
async fn start(catalogue: Arc<Catalogue>, _request: Request) -> Result<Outcome, FlowError> {
    Ok(Choice::default().screen(&catalogue))
}

/// A choice on `APPOINTMENT` (with `trigger`), or continuing from it (without).
async fn appointment(catalogue: Arc<Catalogue>, request: Request) -> Result<Outcome, FlowError> {
    let (choice, error) = Choice::read(&catalogue, &request);
    if let Some(error) = error {
        return Ok(choice.screen(&catalogue).with_error(error));
    }
    match request.text("trigger") {
        Some("department_selected" | "location_selected" | "date_selected") => {
            Ok(choice.screen(&catalogue))
        }
        Some(other) => Err(FlowError::Invalid(format!("unknown trigger `{other}`"))),
        None => match choice.complete() {
            Ok(appointment) => Ok(Outcome::screen(
                DETAILS,
                Value::Object(appointment.fields()),
            )),
            Err(missing) => Ok(choice.screen(&catalogue).with_error(missing)),
        },
    }
}

/// The details submitted on `DETAILS`.
async fn details(catalogue: Arc<Catalogue>, request: Request) -> Result<Outcome, FlowError> {
    let appointment = Appointment::carried(&catalogue, &request)?;
    let mut data = appointment.fields();
    match Details::read(&request) {
        Err(error) => Ok(Outcome::screen(DETAILS, Value::Object(data)).with_error(error)),
        Ok(details) => {
            data.insert("details".into(), details.describe().into());
            data.insert("name".into(), details.name.into());
            data.insert("email".into(), details.email.into());
            data.insert("phone".into(), details.phone.into());
            data.insert("notes".into(), details.notes.into());
            Ok(Outcome::screen(SUMMARY, Value::Object(data)))
        }
    }
}

/// The booking confirmed on `SUMMARY`.
async fn confirm(catalogue: Arc<Catalogue>, request: Request) -> Result<Outcome, FlowError> {
    let appointment = Appointment::carried(&catalogue, &request)?;
    let details = Details::read(&request).map_err(|reason| {
        FlowError::Invalid(format!(
            "the details sent from SUMMARY are not valid: {reason}"
        ))
    })?;
    Ok(Outcome::complete(json!({
        "department": appointment.department.id,
        "location": appointment.location.id,
        "date": appointment.date.id,
        "time": appointment.time,
        "name": details.name,
        "email": details.email,
        "phone": details.phone,
        "notes": details.notes,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones() {
        let cases = [
            ("+44 1234 567890", Some("+441234567890")),
            ("(020) 7946-0958", Some("02079460958")),
            ("1234567", Some("1234567")),
            ("+123456789012345", Some("+123456789012345")),
            ("123456", None),
            ("+1234567890123456", None),
            ("12345x7890", None),
            ("++441234567890", None),
            ("", None),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize_phone(input).as_deref(), expected, "{input}");
        }
    }

    #[test]
    fn the_reference_catalogue_links_up() {
        let c = Catalogue::reference();
        let ids = |items: Vec<&Item>| items.iter().map(|i| i.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(c.locations("cardiology")), ["central", "north"]);
        assert_eq!(ids(c.locations("paediatrics")), ["north", "riverside"]);
        assert!(c.locations("surgery").is_empty());
        assert_eq!(
            ids(c.dates("cardiology", "central")),
            ["2026-03-02", "2026-03-04"]
        );
        assert_eq!(
            c.times("cardiology", "central", "2026-03-02"),
            ["09:00", "09:30", "10:00"]
        );
        assert!(c.times("cardiology", "riverside", "2026-03-02").is_empty());
        // Every department offers something.
        for d in c.departments() {
            assert!(!c.locations(&d.id).is_empty(), "{}", d.id);
        }
    }
}
