//! # plasticity
//!
//! Train neural networks with biologically plausible learning rules (backprop, feedback
//! alignment, direct and indirect feedback alignment, sign-symmetric feedback, direct
//! random target projection; see [`rule`]) on the CPU or a GPU, and measure how each
//! rule's updates align with backprop's ([`Trainer::alignment`]).
//!
//! A [`Network`] is a stack of dense layers. A [`Trainer`] moves it to a [`Device`] and
//! steps it with a [`Rule`] (which decides how the output error reaches the hidden
//! layers) and an [`Optimizer`] (which turns the rule's update into a parameter change).
//!
//! ```
//! use plasticity::data::Dataset;
//! use plasticity::{Activation, Device, Network, Optimizer, Rule, TrainConfig, Trainer};
//!
//! // XOR, the classic problem no linear model solves.
//! let data = Dataset::new(vec![0., 0., 0., 1., 1., 0., 1., 1.], vec![0, 1, 1, 0], 2, 2)?;
//! let net = Network::builder(2)
//!     .dense(16, Activation::Tanh)
//!     .dense(2, Activation::Identity)
//!     .seed(1)
//!     .build()?;
//! let config = TrainConfig {
//!     rule: Rule::FeedbackAlignment,
//!     optimizer: Optimizer::adam(0.05),
//!     batch_size: 4,
//!     ..TrainConfig::default()
//! };
//! let mut trainer = Trainer::new(net, config, Device::Cpu)?;
//! for _ in 0..200 {
//!     trainer.train_epoch(&data, |_, _| {})?;
//! }
//! assert_eq!(trainer.evaluate(&data)?.accuracy, 1.0);
//! # Ok::<(), plasticity::Error>(())
//! ```
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod activation;
pub mod backend;
// Timing helpers for the crate's own examples, benches and reference scripts; public
// so they can reach them, hidden because they are not part of the API users build on.
#[doc(hidden)]
pub mod bench;
pub mod checkpoint;
pub mod data;
pub mod device;
pub mod error;
pub mod init;
pub mod layer;
pub mod learner;
pub mod loss;
pub mod metrics;
pub mod models;
pub mod network;
pub mod optim;
pub mod rule;
pub mod schedule;
pub mod trainer;

pub use activation::Activation;
pub use checkpoint::Checkpoint;
pub use device::Device;
pub use error::{Error, Result};
pub use init::{FeedbackInit, WeightInit};
pub use layer::{LayerKind, LayerSpec, Shape};
pub use learner::{DeltaRule, Learner, StepCx, TensorSpec};
pub use loss::Loss;
pub use metrics::{Evaluation, LayerAlignment};
pub use network::{Network, NetworkBuilder, ParamLayout};
pub use optim::Optimizer;
pub use rule::Rule;
pub use schedule::Schedule;
pub use trainer::{Residency, TrainConfig, Trainer, MAX_STEPS_PER_SUBMIT};

/// The README's code examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
