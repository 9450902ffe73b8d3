//! Single-use vouchers (a campaign hands out one code per household). This module
//! owns the codes: how they are generated, shown, read back and hashed for storage.

mod code;

pub use code::{CodeError, VoucherCode};
