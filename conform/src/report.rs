//! The outcome of a run: one line per check, then the totals; or the same as JSON.

use serde_json::{Value, json};

/// One check and, when it failed, why (naming the screen and field where there is one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub failure: Option<String>,
}

/// Every check of a run, in the order they were made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    pub fn pass(&mut self, name: impl Into<String>) {
        self.record(name, Ok(()));
    }

    pub fn fail(&mut self, name: impl Into<String>, reason: impl Into<String>) {
        self.record(name, Err(reason.into()));
    }

    pub fn record(&mut self, name: impl Into<String>, result: Result<(), String>) {
        self.checks.push(Check {
            name: name.into(),
            failure: result.err(),
        });
    }

    pub fn passed(&self) -> usize {
        self.checks.iter().filter(|c| c.failure.is_none()).count()
    }

    pub fn failed(&self) -> usize {
        self.checks.len() - self.passed()
    }

    /// True when every check passed (and there was at least one).
    pub fn success(&self) -> bool {
        !self.checks.is_empty() && self.failed() == 0
    }

    /// The failure of the first check whose name contains `name`, for tests and callers
    /// that look for one check.
    pub fn failure(&self, name: &str) -> Option<&str> {
        self.checks
            .iter()
            .find(|c| c.name.contains(name) && c.failure.is_some())
            .and_then(|c| c.failure.as_deref())
    }

    /// `ok   <check>` / `FAIL <check>: <reason>` lines, then `N passed, M failed`.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for check in &self.checks {
            match &check.failure {
                None => out.push_str(&format!("ok   {}\n", check.name)),
                Some(reason) => out.push_str(&format!("FAIL {}: {reason}\n", check.name)),
            }
        }
        out.push_str(&format!(
            "{} passed, {} failed\n",
            self.passed(),
            self.failed()
        ));
        out
    }

    /// `{"passed", "failed", "checks": [{"check", "ok", "reason"?}]}`.
    pub fn json(&self) -> Value {
        let checks: Vec<Value> = self
            .checks
            .iter()
            .map(|c| match &c.failure {
                None => json!({"check": c.name, "ok": true}),
                Some(reason) => json!({"check": c.name, "ok": false, "reason": reason}),
            })
            .collect();
        json!({"passed": self.passed(), "failed": self.failed(), "checks": checks})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_json_list_every_check_then_the_totals() {
        let mut report = Report::default();
        report.pass("ping");
        report.fail("INIT", "screen `A`: declared field `x` is missing");
        assert_eq!(
            report.text(),
            "ok   ping\nFAIL INIT: screen `A`: declared field `x` is missing\n1 passed, 1 failed\n"
        );
        assert_eq!(report.json()["failed"], 1);
        assert_eq!(report.json()["checks"][1]["ok"], false);
        assert!(!report.success());
        assert_eq!(
            report.failure("INIT"),
            Some("screen `A`: declared field `x` is missing")
        );
    }
}
