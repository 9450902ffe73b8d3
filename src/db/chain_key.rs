//! The audit chain's key, carried by the pool to the transactions it runs. Every
//! action records its audit event inside its own transaction, through `Database`; the
//! key rides along with the connection's thread for the length of that work, instead
//! of through the signature of every service that records an event.

use std::cell::RefCell;

use crate::crypto::DerivedKey;

thread_local! {
    static CURRENT: RefCell<Option<DerivedKey>> = const { RefCell::new(None) };
}

/// While alive, `current()` on this thread answers `key`; restores the previous one
/// when dropped (a nested call on another database).
pub(super) struct ChainKeyScope {
    previous: Option<DerivedKey>,
}

pub(super) fn enter(key: Option<DerivedKey>) -> ChainKeyScope {
    ChainKeyScope {
        previous: CURRENT.with(|current| current.replace(key)),
    }
}

impl Drop for ChainKeyScope {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CURRENT.with(|current| *current.borrow_mut() = previous);
    }
}

/// The audit chain key of the database whose work runs on this thread, if its keys
/// are open.
pub fn current() -> Option<DerivedKey> {
    CURRENT.with(|current| current.borrow().clone())
}
