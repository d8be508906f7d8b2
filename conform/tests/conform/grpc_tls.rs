//! gRPC mode over TLS: the Rust flow service's handler behind a tonic server with a
//! certificate the run trusts through `--ca`.

use crate::common::*;
use flow_service::service::FlowServer;
use flow_service::store::MemoryStore;
use flowgate_conform::Target;
use flowgate_conform::grpc::GrpcOptions;
use flowgate_proto::v1::flow_service_server::FlowServiceServer;
use tonic::transport::{Identity, Server, ServerTlsConfig};

#[tokio::test]
async fn grpc_mode_speaks_tls_with_the_given_ca() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_pem, key_pem) = (cert.cert.pem(), cert.signing_key.serialize_pem());
    let flows = flow_service::flows::reference().strict(true);
    let service = FlowServer::new(flows, std::sync::Arc::new(MemoryStore::default()));
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = Server::builder()
        .tls_config(ServerTlsConfig::new().identity(Identity::from_pem(&cert_pem, &key_pem)))
        .unwrap()
        .add_service(health_service)
        .add_service(FlowServiceServer::new(service))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    tokio::spawn(server);

    let options = |ca: Option<&str>| GrpcOptions {
        url: format!("https://localhost:{port}"),
        flow: "signup".into(),
        ca_pem: ca.map(|c| c.as_bytes().to_vec()),
        ..GrpcOptions::default()
    };
    let report = run(Target::Grpc(options(Some(&cert_pem))), "signup").await;
    assert_passes(&report);

    // Without the CA there is no way to trust the server: the run refuses to start.
    let refused = flowgate_conform::run(flowgate_conform::Options {
        target: Target::Grpc(options(None)),
        flow_json: flow_json("signup"),
        scenario: Default::default(),
    })
    .await;
    assert!(refused.unwrap_err().to_string().contains("--ca"));
}
