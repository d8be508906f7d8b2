//! The scenario file: form values by screen where a flow needs real ones, and extra
//! walks whose inputs take the branches the first walk does not.
//!
//! TOML (or JSON, for a file ending in `.json`):
//!
//! ```toml
//! # Values for every walk, by screen then input name; they replace derived values.
//! [inputs.SIGN_IN]
//! customer_id = "C-1001"
//!
//! # Each walk starts afresh (new flow token) with these values on top of `inputs`.
//! [[walks]]
//! name = "minor"
//! [walks.inputs.AGE]
//! age = "12"
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Value};

/// Inputs by screen id, then by input name.
pub type Inputs = BTreeMap<String, Map<String, Value>>;

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    #[serde(default)]
    pub inputs: Inputs,
    #[serde(default)]
    pub walks: Vec<Walk>,
}

/// One more walk: its own inputs on top of the scenario's.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Walk {
    pub name: Option<String>,
    #[serde(default)]
    pub inputs: Inputs,
}

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
}

/// A walk to make: a name for the report and the inputs it uses.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub name: String,
    pub inputs: Inputs,
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: shown.clone(),
            source,
        })?;
        let parsed = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).map_err(|e| e.to_string())
        } else {
            toml::from_str(&text).map_err(|e| e.to_string())
        };
        parsed.map_err(|message| ScenarioError::Parse {
            path: shown,
            message,
        })
    }

    /// The walks to make: the first with the scenario's inputs, then one per `[[walks]]`.
    pub fn plans(&self) -> Vec<Plan> {
        let mut plans = vec![Plan {
            name: "walk 1".into(),
            inputs: self.inputs.clone(),
        }];
        for (i, walk) in self.walks.iter().enumerate() {
            let mut inputs = self.inputs.clone();
            for (screen, values) in &walk.inputs {
                inputs
                    .entry(screen.clone())
                    .or_default()
                    .extend(values.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            let name = match &walk.name {
                Some(name) => format!("walk {} ({name})", i + 2),
                None => format!("walk {}", i + 2),
            };
            plans.push(Plan { name, inputs });
        }
        plans
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_add_their_inputs_on_top_of_the_shared_ones() {
        let scenario: Scenario = toml::from_str(
            r#"
            [inputs.A]
            name = "Ada"
            [[walks]]
            name = "minor"
            [walks.inputs.A]
            age = 12
            "#,
        )
        .unwrap();
        let plans = scenario.plans();
        assert_eq!(plans.len(), 2);
        assert_eq!(plans[1].name, "walk 2 (minor)");
        assert_eq!(plans[1].inputs["A"]["name"], "Ada");
        assert_eq!(plans[1].inputs["A"]["age"], 12);
        assert!(toml::from_str::<Scenario>("[input.A]\nx = 1").is_err());
    }
}
