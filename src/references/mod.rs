//! Keeping executor and Task references valid after admission: an index of which hooks name which
//! Function and which objects name which Task ([`index`]), a webhook that keeps a Function or a
//! Task in use from being deleted or broken ([`protect`]), and an audit that reports broken
//! references as Events ([`audit`]).

pub mod audit;
pub mod index;
pub mod protect;
