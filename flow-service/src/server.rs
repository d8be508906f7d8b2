//! Serves a set of flows over gRPC, with `grpc.health.v1` and reflection, until shutdown.

use std::future::Future;

use flowgate_proto::v1::flow_service_server::FlowServiceServer;
use tokio_stream::wrappers::TcpListenerStream;
use tonic_health::ServingStatus;

use crate::service::{FlowServer, Flows};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves `flows` on `listener` until `shutdown` completes. Health for the whole
/// server (`""`) and for `flowgate.v1.FlowService` turns NOT_SERVING as soon as
/// shutdown begins; calls in flight are then finished before this returns.
pub async fn run(
    listener: tokio::net::TcpListener,
    flows: Flows,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
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
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(FlowServiceServer::new(FlowServer::new(flows)))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await?;
    Ok(())
}
