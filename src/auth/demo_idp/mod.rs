//! The demonstration OpenID provider, mounted only in demo mode.
