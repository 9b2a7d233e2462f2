//! The relabel job: joins each GIF's upload (or backfill) event, the model's suggestions and
//! its users' feedback into the GIF's current training labels (topic `gif-training-labels`),
//! for the retraining that follows (issue 13).
//!
//! **Owns** the rule ([`rule`]: GIPHY's semi-supervised cleaning plus user votes, a pure
//! function of a GIF's folded inputs) and the conversion of the three streams' records into
//! the rule's facts ([`input`]).
//!
//! **Promises**: the labels of a GIF depend only on the multiset of its inputs, never on the
//! order they arrive in or on how often one is delivered (the folds are commutative and
//! idempotent; feedback counts once per (`client`, `event_id`)); a record that cannot be an
//! input is refused with a stable reason ([`input::InputError::reason`]).
//!
//! **Limits** (what lands later): the consuming service (`autotag relabel`, its `[relabel]`
//! config), the transactional state store with the input offsets, partition takeover, and
//! `autotag relabel export` are not built yet; the worker does not fill
//! `existing_tag_scores` yet.
//!
//! **Never imports** the model, libtorch or another service.

pub mod input;
pub mod rule;

pub use input::{Fact, FactKind, InputError, OrderKey};
pub use rule::{GifState, Outcome, Thresholds};
