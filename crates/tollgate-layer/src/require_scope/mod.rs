//! Refuses requests whose verified token lacks a scope the wrapped service needs.
//!
//! [`RequireScopeLayer`] wraps a service in [`RequireScope`], whose [`ResponseFuture`] is the
//! inner service's call or a ready rejection. Place it *inside* a
//! [`ValidateBearerLayer`](crate::validate_bearer::ValidateBearerLayer): it reads the
//! [`VerifiedClaims`](crate::VerifiedClaims) that layer put in the request's extensions.
//!
//! A request without claims (no token, in optional mode) gets 401; one whose token lacks a scope
//! gets 403 `insufficient_scope` with the required scopes in the challenge (gRPC: status 7).
//!
//! # Example
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use std::convert::Infallible;
//! use tollgate_layer::require_scope::RequireScopeLayer;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let service = ServiceBuilder::new()
//!     // In an application, a `ValidateBearerLayer` goes first.
//!     .layer(RequireScopeLayer::new("orders:write"))
//!     .service_fn(|_: Request<String>| async {
//!         Ok::<_, Infallible>(Response::new(String::new()))
//!     });
//!
//! // Without verified claims the request is refused before the inner service.
//! let response = service.oneshot(Request::new(String::new())).await?;
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! # Ok(())
//! # }
//! ```

mod future;
mod layer;
mod service;

pub use future::ResponseFuture;
pub use layer::RequireScopeLayer;
pub use service::RequireScope;
