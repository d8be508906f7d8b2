//! The reference flows.

pub mod signup;

use crate::service::Flows;

/// The flows this service runs by default: `signup`, which is also the default flow.
pub fn reference() -> Flows {
    Flows::new()
        .register("signup", signup::Signup)
        .default_flow("signup")
}
