//! Serves a set of flows over gRPC, with `grpc.health.v1` and reflection, until shutdown.

use std::future::Future;
use std::time::Duration;

use flowgate_proto::v1::flow_service_server::FlowServiceServer;
use tokio_stream::wrappers::TcpListenerStream;
use tonic_health::ServingStatus;

use crate::service::{FlowServer, Flows};
use crate::store::{Store, StoreError};

/// How often expired outcomes and sessions are deleted.
const CLEANUP_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("cannot open the in-memory store: {0}")]
    Store(#[from] StoreError),
}

/// Serves `flows` on `listener` until `shutdown` completes. Health for the whole
/// server (`""`) and for `flowgate.v1.FlowService` turns NOT_SERVING as soon as
/// shutdown begins; calls in flight are then finished before this returns.
///
/// State goes to the flows' [`Store`](Flows::store); without one, to a private
/// in-memory SQLite database that lives as long as this server (logged as a warning).
/// Expired outcomes and sessions are deleted every minute until shutdown.
pub async fn run(
    listener: tokio::net::TcpListener,
    flows: Flows,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let store = match flows.get_store() {
        Some(store) => store.clone(),
        None => {
            tracing::warn!(
                "no store configured: completions and sessions are kept in memory and lost on exit"
            );
            Store::memory().await?
        }
    };
    let cleanup = tokio::spawn(cleanup(store.clone()));
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<FlowServiceServer<FlowServer>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(flowgate_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let shutdown = async move {
        shutdown.await;
        health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        health
            .set_not_serving::<FlowServiceServer<FlowServer>>()
            .await;
    };
    let served = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(FlowServiceServer::new(FlowServer::new(flows, store)))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await;
    cleanup.abort();
    served?;
    Ok(())
}

/// Deletes expired outcomes and sessions now and then. A failure is logged and
/// retried at the next tick: the rows are only kept longer.
async fn cleanup(store: Store) {
    let mut every = tokio::time::interval(CLEANUP_EVERY);
    loop {
        every.tick().await;
        match store.cleanup_expired().await {
            Ok(0) => {}
            Ok(rows) => tracing::debug!(rows, "expired outcomes and sessions deleted"),
            Err(error) => tracing::warn!(%error, "cleanup of expired rows failed"),
        }
    }
}
