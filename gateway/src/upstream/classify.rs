//! What a failed attempt means for a retry: whether anything reached the replica.
//!
//! A status made by the client's own transport ([`super::transport`]) carries the
//! transport error as its source; the chain is walked and each link recognised by its
//! type ([`tonic::ConnectError`], which the transport makes of every failure to
//! connect; `std::io::Error` kinds; `h2` errors, and `hyper`'s should a transport
//! built on hyper come back), never by the text of a message, which changes between
//! versions.

use tonic::{Code, Status};

/// How a failed attempt may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No connection could be made (refused, unroutable, connect timeout): nothing
    /// was sent, and the replica is likely down.
    NotConnected,
    /// Refused (`UNAVAILABLE`), or the connection broke after the call was sent: it
    /// may have run, so a retry carries the same idempotency key.
    Retryable,
    /// An answer from the flow service: final.
    Final,
}

/// Classifies a failed call's status.
pub fn classify(status: &Status) -> Failure {
    match (status.code(), transport_error(status)) {
        (_, Some(Transport::NotConnected)) => Failure::NotConnected,
        (Code::Unavailable, _) => Failure::Retryable,
        (Code::Unknown | Code::Internal | Code::Cancelled, Some(Transport::Broken)) => {
            Failure::Retryable
        }
        _ => Failure::Final,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    NotConnected,
    Broken,
}

/// Whether a status was made by the client's transport rather than sent by the
/// service, and if so whether the connection was never made or broke.
fn transport_error(status: &Status) -> Option<Transport> {
    let mut transport = None;
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if error.downcast_ref::<tonic::ConnectError>().is_some() {
            // tonic wraps everything its connector fails with (TCP connect, connect
            // timeout) in this type: the call never left.
            return Some(Transport::NotConnected);
        }
        if let Some(e) = error.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                e.kind(),
                ConnectionRefused | HostUnreachable | NetworkUnreachable | AddrNotAvailable
            ) {
                return Some(Transport::NotConnected);
            }
            transport = Some(Transport::Broken);
        } else if error.downcast_ref::<hyper::Error>().is_some()
            || error.downcast_ref::<h2::Error>().is_some()
            || error.downcast_ref::<tonic::transport::Error>().is_some()
        {
            // Anything else from the HTTP/2 stack on an established connection
            // (reset, closed, GOAWAY, incomplete message): it may have been sent.
            transport = Some(Transport::Broken);
        }
        source = error.source();
    }
    transport
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowgate_proto::v1::InitRequest;
    use flowgate_proto::v1::flow_service_client::FlowServiceClient;
    use tokio::io::AsyncReadExt;

    /// A call through the gateway's own transport.
    async fn call(addr: std::net::SocketAddr) -> Status {
        use super::super::transport::{Connection, Dial};
        let connection = Connection::lazy(Dial { addr, tls: None });
        FlowServiceClient::with_origin(connection.clone(), connection.origin())
            .init(InitRequest::default())
            .await
            .unwrap_err()
    }

    #[test]
    fn answers_from_the_service() {
        assert_eq!(
            classify(&Status::unavailable("draining")),
            Failure::Retryable
        );
        for status in [
            Status::internal("bug"),
            Status::unknown("?"),
            Status::cancelled("cancelled"),
            Status::invalid_argument("bad"),
            Status::resource_exhausted("busy"),
            Status::deadline_exceeded("late"),
            Status::not_found("no such flow"),
        ] {
            assert_eq!(classify(&status), Failure::Final, "{status:?}");
        }
    }

    #[tokio::test]
    async fn a_refused_connection_sent_nothing() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let status = call(addr).await;
        assert_eq!(classify(&status), Failure::NotConnected, "{status:?}");
    }

    #[tokio::test]
    async fn a_connection_broken_after_sending_may_have_run() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            // Read the preface and the call's first frames, then hang up unanswered.
            let mut buffer = [0; 64];
            let _ = socket.read(&mut buffer).await;
            drop(socket);
        });
        let status = call(addr).await;
        assert_eq!(classify(&status), Failure::Retryable, "{status:?}");
        assert!(
            transport_error(&status) == Some(Transport::Broken),
            "{status:?}"
        );
    }
}
