//! Logging in: the OpenID Connect relying party (FranceConnect, the Belgian FAS, any
//! standard provider), the JWKS cache that verifies what providers sign, the built-in
//! demonstration provider, and server-side sessions.

pub mod assurance;
pub mod demo_idp;
pub mod http;
pub mod jwks;
pub mod relying_party;
pub mod sessions;
pub mod throttle;

/// The id of the built-in demonstration provider, in URLs: `/login/demo`.
pub const DEMO_PROVIDER_ID: &str = "demo";
