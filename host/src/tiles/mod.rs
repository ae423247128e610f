//! The log's durable copy in object storage, in the C2SP tlog-tiles layout
//! (`c2sp.org/tlog-tiles`, whose paths and bundles `leadgate_verifier::tiles` defines):
//! [`bucket`] (the object store chosen by URL), [`records`] (what the database keeps beside
//! each leaf, published beside the entry bundles), [`publish`] (tiles, then the checkpoint,
//! then the confirmation to the enclave) and [`repair`] (a database rebuilt or completed
//! from the bucket, every entry checked against its receipt and the signed checkpoint) and
//! [`scrub`] (stored leaves checked against the tree and their receipts in the background).

pub mod bucket;
pub mod publish;
pub mod records;
pub mod repair;
pub mod scrub;
