//! Verifying JSON Web Signatures (ES256, RS256) against a provider's published keys.
