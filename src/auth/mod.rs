//! Logging in: the OpenID Connect relying party (FranceConnect, the Belgian FAS, any
//! standard provider), the JWKS cache that verifies what providers sign, the built-in
//! demonstration provider, and server-side sessions.

pub mod demo_idp;
pub mod http;
pub mod jwks;
