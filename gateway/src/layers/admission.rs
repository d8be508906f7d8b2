//! Admission: at most `FLOWGATE_MAX_IN_FLIGHT` requests past this point at once, across
//! every route. Stock layers do it: tower's `GlobalConcurrencyLimitLayer` holds a slot
//! of the shared semaphore until the answer is ready; `LoadShedLayer` above it refuses
//! at once when no slot is free, instead of letting the request queue towards the
//! platform's deadline; axum's `HandleErrorLayer` turns that refusal into an answer
//! with [`refuse`]. This module holds that function and [`count_in_flight`], the
//! `flowgate_in_flight` gauge of admitted requests.
//!
//! Admission comes after the body read and the signature check, so neither a slow
//! client nor a forged request can hold a slot.

use std::future::Future;

use axum::BoxError;
use tower::load_shed::error::Overloaded;

use crate::error::GatewayError;
use crate::telemetry;

/// The answer to a request the limit refused: 503 `overloaded` with `Retry-After: 1`.
pub async fn refuse(error: BoxError) -> GatewayError {
    if error.is::<Overloaded>() {
        telemetry::shed();
        GatewayError::GatewayBusy
    } else {
        // The layers below admission never fail; should one start to, say so.
        GatewayError::Unavailable {
            detail: format!("admission: {error}"),
        }
    }
}

/// Counts a request in `flowgate_in_flight` for as long as its answer is being made.
pub async fn count_in_flight<F: Future>(answer: F) -> F::Output {
    let _in_flight = telemetry::InFlight::start();
    answer.await
}
