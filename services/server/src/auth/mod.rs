//! Authentication of the gRPC transport: the tower layer that turns each call's bearer token into
//! a [`layer::Calling`]. Tokens, issuers and the dev issuer are the application's
//! (`naast_app::auth`), re-exported here.

pub use naast_app::auth::*;
pub mod layer;
