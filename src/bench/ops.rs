//! Where a step's time goes: every operation of a training step timed on its own, over
//! many steps, through a [`TracingBackend`](crate::backend::TracingBackend).
//!
//! Set beside the same products timed alone (`examples/step_time.rs --breakdown`), the
//! operations' times show what a step pays over its floor and where: a product that
//! runs slower inside the step than alone (its weights come from memory, not from the
//! cache a repeated run enjoys), elementwise work, and the host's own work between
//! operations.
//!
//! ```
//! use plasticity::backend::{CpuBackend, TracingBackend};
//! use plasticity::bench::{time_step_ops, StepShape};
//! use plasticity::{Rule, Trainer};
//!
//! let shape = StepShape { width: 64, depth: 2, batch: 32 };
//! let tracer = TracingBackend::new(Box::new(CpuBackend::new()));
//! let trace = tracer.trace();
//! let config = shape.config(Rule::Backprop);
//! let mut trainer = Trainer::with_backend(shape.network(0)?, config, Box::new(tracer))?;
//! let timed = time_step_ops(&mut trainer, &trace, &shape.data(2, 7)?, 1, 5)?;
//! // Forward (3 products), loss, the two products down the chain, the gradients, SGD.
//! assert_eq!(timed.ops.len(), 3 + 1 + 2 + 2);
//! assert!(timed.ops.iter().all(|op| op.timing.samples == 5));
//! # Ok::<(), plasticity::Error>(())
//! ```

use std::time::Duration;

use super::{timed_steps, warmed_cycle, Timing};
use crate::backend::{OpKind, Trace, TracedOp};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::Trainer;

/// One operation of a step and its times over the timed steps.
#[derive(Debug, Clone, PartialEq)]
pub struct TimedOp {
    /// The operation as the first timed step recorded it.
    pub op: TracedOp,
    /// Its time over the timed steps.
    pub timing: Timing,
}

impl TimedOp {
    /// GFLOP/s of a matrix product at its median time; `None` for other operations
    /// (the gradient products the CPU backend holds back are timed in the optimizer
    /// pass that runs them, so their own record takes no time).
    pub fn gflops(&self) -> Option<f64> {
        let product = matches!(self.op.kind, OpKind::Gemm | OpKind::FusedGemm);
        let seconds = self.timing.median.as_secs_f64();
        (product && seconds > 0.0).then(|| self.op.gemm_flops as f64 / seconds * 1e-9)
    }
}

/// Every operation of a step, timed, and the whole steps of the same runs.
#[derive(Debug, Clone, PartialEq)]
pub struct StepOps {
    /// The operations in issue order.
    pub ops: Vec<TimedOp>,
    /// Whole steps.
    pub step: Timing,
    /// Each step's time outside its operations: the host's work between them
    /// (gathering the batch, bookkeeping). Taken step by step, as the operations' own
    /// medians need not add up to the step's.
    pub between: Timing,
}

impl StepOps {
    /// The operations' medians summed.
    pub fn ops_total(&self) -> Duration {
        self.ops.iter().map(|op| op.timing.median).sum()
    }
}

/// Times each operation of `repeats` steps of `trainer` (after `warmup` untimed ones),
/// which must run on a [`TracingBackend`](crate::backend::TracingBackend) wrapping a
/// backend and recording into `trace`. Every step must issue the same operations, as
/// the rules' steps do; an error says where two differed, or that nothing was recorded.
pub fn time_step_ops(
    trainer: &mut Trainer,
    trace: &Trace,
    data: &Dataset,
    warmup: usize,
    repeats: usize,
) -> Result<StepOps> {
    if repeats == 0 {
        return Err(Error::config("timing needs repeats >= 1"));
    }
    let mut cycle = warmed_cycle(trainer, data, warmup)?;
    let mut first: Vec<TracedOp> = Vec::new();
    let mut times: Vec<Vec<Duration>> = Vec::new();
    let (mut steps, mut between) = (Vec::with_capacity(repeats), Vec::with_capacity(repeats));
    for step in 0..repeats {
        trace.clear();
        let took = timed_steps(&mut cycle, trainer, data, 1)?;
        steps.push(took);
        let ops = trace.ops();
        if step == 0 {
            if ops.is_empty() {
                return Err(Error::config(
                    "no operations recorded: the trainer must run on the TracingBackend whose \
                     trace is given",
                ));
            }
            times = vec![Vec::with_capacity(repeats); ops.len()];
            first = ops.clone();
        }
        if ops.len() != first.len() {
            return Err(Error::config(format!(
                "step {step} issued {} operations, the first timed step {}",
                ops.len(),
                first.len()
            )));
        }
        for (i, (op, was)) in ops.iter().zip(&first).enumerate() {
            if (op.kind, &op.writes) != (was.kind, &was.writes) {
                return Err(Error::config(format!(
                    "operation {i} of step {step} was {:?}, in the first timed step {:?}",
                    op.kind, was.kind
                )));
            }
            let elapsed = op.elapsed.ok_or_else(|| {
                Error::config("a dry trace: wrap a backend that runs the operations")
            })?;
            times[i].push(elapsed);
        }
        let inside: Duration = times.iter().filter_map(|t| t.last()).sum();
        between.push(took.saturating_sub(inside));
    }
    let timing = |samples: Vec<Duration>| {
        Timing::from_samples(samples).ok_or_else(|| Error::config("timing needs repeats >= 1"))
    };
    let ops = first
        .into_iter()
        .zip(times)
        .map(|(op, samples)| {
            Ok(TimedOp {
                op,
                timing: timing(samples)?,
            })
        })
        .collect::<Result<_>>()?;
    Ok(StepOps {
        ops,
        step: timing(steps)?,
        between: timing(between)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{CpuBackend, TracingBackend};
    use crate::bench::StepShape;
    use crate::Rule;

    const SHAPE: StepShape = StepShape {
        width: 32,
        depth: 3,
        batch: 8,
    };

    fn traced(rule: Rule, tracer: TracingBackend) -> Trainer {
        let net = SHAPE.network(0).unwrap();
        Trainer::with_backend(net, SHAPE.config(rule), Box::new(tracer)).unwrap()
    }

    /// The timed operations are the step's operations, in order, each timed in every
    /// step; the products' rates follow from their recorded work.
    #[test]
    fn every_operation_of_the_step_is_timed_in_every_step() {
        let data = SHAPE.data(3, 1).unwrap();
        for rule in [Rule::Backprop, Rule::DirectFeedbackAlignment] {
            let dry = TracingBackend::dry();
            let dry_trace = dry.trace();
            let mut trainer = traced(rule, dry);
            dry_trace.clear();
            trainer
                .train_batch(&data, &[0, 1, 2, 3, 4, 5, 6, 7])
                .unwrap();
            let kinds: Vec<OpKind> = dry_trace.ops().iter().map(|op| op.kind).collect();

            let tracer = TracingBackend::new(Box::new(CpuBackend::new()));
            let trace = tracer.trace();
            let mut trainer = traced(rule, tracer);
            let timed = time_step_ops(&mut trainer, &trace, &data, 2, 4).unwrap();
            let timed_kinds: Vec<OpKind> = timed.ops.iter().map(|op| op.op.kind).collect();
            assert_eq!(timed_kinds, kinds, "{rule}");
            assert_eq!((timed.step.samples, timed.between.samples), (4, 4));
            assert!(timed.between.median <= timed.step.median);
            for op in &timed.ops {
                assert_eq!(op.timing.samples, 4);
                let product = matches!(op.op.kind, OpKind::Gemm | OpKind::FusedGemm);
                assert_eq!(
                    op.gflops().is_some(),
                    product && op.timing.median > Duration::ZERO
                );
            }
            let sum: Duration = timed.ops.iter().map(|op| op.timing.median).sum();
            assert_eq!(timed.ops_total(), sum);
        }
    }

    #[test]
    fn untraced_trainers_and_dry_traces_are_refused() {
        let data = SHAPE.data(2, 1).unwrap();
        // A trace no trainer records into.
        let mut plain = SHAPE.trainer(Rule::Backprop, crate::Device::Cpu).unwrap();
        let err = time_step_ops(&mut plain, &Trace::default(), &data, 0, 2).unwrap_err();
        assert!(err.to_string().contains("no operations recorded"), "{err}");
        // A dry run records but times nothing.
        let dry = TracingBackend::dry();
        let trace = dry.trace();
        let mut trainer = traced(Rule::Backprop, dry);
        let err = time_step_ops(&mut trainer, &trace, &data, 0, 2).unwrap_err();
        assert!(err.to_string().contains("dry trace"), "{err}");
        // Nothing to time.
        let err = time_step_ops(&mut trainer, &trace, &data, 0, 0).unwrap_err();
        assert!(err.to_string().contains("repeats >= 1"), "{err}");
    }
}
