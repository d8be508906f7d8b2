//! JSON ⇄ `google.protobuf.Struct`, with no silent loss of numbers.
//!
//! Struct numbers are doubles. Beyond ±(2^53 − 1) a double cannot hold every
//! integer, and a parser cannot tell whether `12345678901234567891` was rounded,
//! so [`struct_from_json`] refuses any number of larger magnitude, naming the
//! field, rather than rounding it. Smaller fractions are read as the nearest
//! double, as any JSON parser reads them. [`struct_to_json`] writes integral doubles within
//! that range as JSON integers and refuses NaN and infinities, which JSON cannot
//! express.

use prost_types::{ListValue, Struct, Value, value::Kind};
use serde_json::{Map, Number, Value as Json};

/// The largest integer magnitude a double holds exactly together with all its neighbours.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Why a JSON value could not be carried in a `Struct`, or back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// A number outside ±(2^53 − 1); `path` is like `data.items[2].id`.
    #[error(
        "`{path}` is a number beyond ±(2^53 - 1), which cannot be carried exactly; send it as a string"
    )]
    IntegerOutOfRange { path: String },
    /// A NaN or infinite double, which JSON cannot express.
    #[error("`{path}` is not a finite number")]
    NotFinite { path: String },
    /// A `Value` with no kind set.
    #[error("`{path}` has no value")]
    Missing { path: String },
}

/// Converts a JSON object into a `Struct`. `root` names the object in error paths.
pub fn struct_from_json(object: &Map<String, Json>, root: &str) -> Result<Struct, JsonError> {
    let mut path = root.to_owned();
    object_from_json(object, &mut path)
}

/// Converts a `Struct` into a JSON object, moving its keys and strings rather than
/// copying them (every caller owns the `Struct` it converts). `root` names the object
/// in error paths.
pub fn struct_to_json(value: Struct, root: &str) -> Result<Map<String, Json>, JsonError> {
    let mut path = root.to_owned();
    object_to_json(value, &mut path)
}

fn object_from_json(object: &Map<String, Json>, path: &mut String) -> Result<Struct, JsonError> {
    let mut fields = std::collections::BTreeMap::new();
    for (key, value) in object {
        let len = path.len();
        push_key(path, key);
        fields.insert(key.clone(), value_from_json(value, path)?);
        path.truncate(len);
    }
    Ok(Struct { fields })
}

fn value_from_json(value: &Json, path: &mut String) -> Result<Value, JsonError> {
    let kind = match value {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(*b),
        Json::Number(n) => Kind::NumberValue(number_from_json(n, path)?),
        Json::String(s) => Kind::StringValue(s.clone()),
        Json::Array(items) => {
            let mut values = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                values.push(value_from_json(item, path)?);
                path.truncate(len);
            }
            Kind::ListValue(ListValue { values })
        }
        Json::Object(object) => Kind::StructValue(object_from_json(object, path)?),
    };
    Ok(Value { kind: Some(kind) })
}

fn number_from_json(n: &Number, path: &str) -> Result<f64, JsonError> {
    let out_of_range = || JsonError::IntegerOutOfRange {
        path: path.to_owned(),
    };
    if let Some(u) = n.as_u64() {
        return if u <= MAX_SAFE_INTEGER {
            Ok(u as f64)
        } else {
            Err(out_of_range())
        };
    }
    if let Some(i) = n.as_i64() {
        return if i.unsigned_abs() <= MAX_SAFE_INTEGER {
            Ok(i as f64)
        } else {
            Err(out_of_range())
        };
    }
    // Every other number is read as the nearest finite double (`float_roundtrip`);
    // beyond the safe range that may already have rounded an integer, so refuse it.
    match n.as_f64() {
        Some(x) if x.abs() <= MAX_SAFE_INTEGER as f64 => Ok(x),
        _ => Err(out_of_range()),
    }
}

fn object_to_json(value: Struct, path: &mut String) -> Result<Map<String, Json>, JsonError> {
    let mut object = Map::new();
    for (key, value) in value.fields {
        let len = path.len();
        push_key(path, &key);
        object.insert(key, value_to_json(value, path)?);
        path.truncate(len);
    }
    Ok(object)
}

fn value_to_json(value: Value, path: &mut String) -> Result<Json, JsonError> {
    Ok(match value.kind {
        None => return Err(JsonError::Missing { path: path.clone() }),
        Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::BoolValue(b)) => Json::Bool(b),
        Some(Kind::NumberValue(x)) => Json::Number(number_to_json(x, path)?),
        Some(Kind::StringValue(s)) => Json::String(s),
        Some(Kind::ListValue(list)) => {
            let mut items = Vec::with_capacity(list.values.len());
            for (i, item) in list.values.into_iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                items.push(value_to_json(item, path)?);
                path.truncate(len);
            }
            Json::Array(items)
        }
        Some(Kind::StructValue(object)) => Json::Object(object_to_json(object, path)?),
    })
}

fn number_to_json(x: f64, path: &str) -> Result<Number, JsonError> {
    if x.fract() == 0.0 && x.abs() <= MAX_SAFE_INTEGER as f64 {
        // Exact: the value is an integer a double holds exactly. `-0.0` becomes `0`.
        return Ok(Number::from(x as i64));
    }
    Number::from_f64(x).ok_or_else(|| JsonError::NotFinite {
        path: path.to_owned(),
    })
}

fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip(value: Json) -> Result<Json, JsonError> {
        let Json::Object(object) = value else {
            panic!("test input must be an object")
        };
        let s = struct_from_json(&object, "data")?;
        struct_to_json(s, "data").map(Json::Object)
    }

    #[test]
    fn values_round_trip_exactly() {
        let cases = [
            json!({}),
            json!({"s": "text", "b": true, "n": null}),
            json!({"int": 5, "neg": -7, "zero": 0, "frac": 0.1, "big": 9007199254740991_i64, "small": -9007199254740991_i64}),
            json!({"nested": {"list": [1, "two", [3.5], {"x": false}]}}),
            json!({"unicode": "é🙂", "empty": "", "emptylist": []}),
            json!({"exp": 1.5e-7, "tiny": 5e-324, "digits": 0.30000000000000004, "large": 4503599627370495.5}),
        ];
        for case in cases {
            assert_eq!(round_trip(case.clone()), Ok(case));
        }
    }

    #[test]
    fn integers_beyond_2_pow_53_are_refused_with_their_path() {
        let cases = [
            (json!({"id": 9007199254740992_u64}), "data.id"),
            (
                json!({"a": {"b": [1, -9007199254740993_i64]}}),
                "data.a.b[1]",
            ),
            (json!({"max": u64::MAX}), "data.max"),
            (json!({"huge": 1.5e300}), "data.huge"),
            (json!({"neg": -9.1e15}), "data.neg"),
        ];
        for (case, path) in cases {
            assert_eq!(
                round_trip(case),
                Err(JsonError::IntegerOutOfRange {
                    path: path.to_owned()
                })
            );
        }
    }

    #[test]
    fn integral_doubles_are_written_as_integers() {
        let s = Struct {
            fields: [
                (
                    "a".to_owned(),
                    Value {
                        kind: Some(Kind::NumberValue(3.0)),
                    },
                ),
                (
                    "b".to_owned(),
                    Value {
                        kind: Some(Kind::NumberValue(-0.0)),
                    },
                ),
                (
                    "c".to_owned(),
                    Value {
                        kind: Some(Kind::NumberValue(1e20)),
                    },
                ),
            ]
            .into(),
        };
        let json = Json::Object(struct_to_json(s, "data").unwrap());
        assert_eq!(json.to_string(), r#"{"a":3,"b":0,"c":1e+20}"#);
    }

    #[test]
    fn non_finite_and_missing_values_are_refused() {
        for (kind, expected) in [
            (
                Some(Kind::NumberValue(f64::NAN)),
                JsonError::NotFinite { path: "p.x".into() },
            ),
            (
                Some(Kind::NumberValue(f64::INFINITY)),
                JsonError::NotFinite { path: "p.x".into() },
            ),
            (None, JsonError::Missing { path: "p.x".into() }),
        ] {
            let s = Struct {
                fields: [("x".to_owned(), Value { kind })].into(),
            };
            assert_eq!(struct_to_json(s, "p"), Err(expected));
        }
    }
}
