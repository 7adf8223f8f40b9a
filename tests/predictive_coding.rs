//! Predictive coding's defining property (Whittington & Bogacz 2017): with a small
//! output error and converged inference, the relaxed prediction errors are BP's
//! deltas, so the local weight updates match BP's gradient; as the output error grows
//! they depart from it. Plus learning, GPU parity and bit-for-bit resume.

mod common;

#[cfg(feature = "gpu")]
use common::gpu::gpu;
use common::{random_dataset, randomize_params};
#[cfg(feature = "gpu")]
use plasticity::backend::CpuBackend;
use plasticity::data::Dataset;
use plasticity::learner::PredictiveCoding;
use plasticity::metrics::angle_degrees;
use plasticity::{Activation, Device, Network, Optimizer, TrainConfig, Trainer};

fn net(hidden: Activation) -> Network {
    let mut net = common::build_net(6, &[7, 5], hidden, 4, Activation::Identity, 3);
    randomize_params(&mut net, 0.6, 11);
    net
}

fn config(batch: usize) -> TrainConfig {
    TrainConfig {
        optimizer: Optimizer::adam(1e-3),
        batch_size: batch,
        ..TrainConfig::default()
    }
}

fn update(net: &Network, pc: Option<PredictiveCoding>, data: &Dataset) -> Vec<f32> {
    let samples: Vec<usize> = (0..data.len()).collect();
    let mut t = match pc {
        Some(pc) => {
            Trainer::with_learner(net.clone(), config(data.len()), Box::new(pc), Device::Cpu)
        }
        None => Trainer::new(net.clone(), config(data.len()), Device::Cpu),
    }
    .unwrap();
    t.update_direction(data, &samples).unwrap()
}

#[test]
fn pc_update_matches_bp_for_small_output_errors_and_departs_as_they_grow() {
    for hidden in [Activation::Tanh, Activation::Sigmoid] {
        let net = net(hidden);
        let data = random_dataset(8, 6, 4, 5);
        let bp = update(&net, None, &data);
        let angle = |beta: f32| {
            let pc = PredictiveCoding::default()
                .with_inference(200, 0.2)
                .with_beta(beta);
            angle_degrees(&update(&net, Some(pc), &data), &bp).unwrap()
        };
        let angles = [0.001, 1.0, 10.0, 50.0].map(angle);
        eprintln!("{hidden}: angles to BP at β = 0.001, 1, 10, 50: {angles:?}");
        let cosine = angles[0].to_radians().cos();
        assert!(cosine > 0.99, "{hidden}: cosine {cosine}");
        assert!(
            angles.windows(2).all(|w| w[0] < w[1]),
            "{hidden}: the angle grows with the output error: {angles:?}"
        );
        // Without inference the hidden errors stay zero: only the output layer learns.
        let frozen = PredictiveCoding::default().with_inference(0, 0.2);
        let u = update(&net, Some(frozen), &data);
        let hidden_params = 6 * 7 + 7 + 7 * 5 + 5;
        assert!(u[..hidden_params].iter().all(|&v| v == 0.0));
        for (a, b) in u[hidden_params..].iter().zip(&bp[hidden_params..]) {
            assert!(
                (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                "output layer {a} vs BP {b}"
            );
        }
        let default = angle_degrees(&update(&net, Some(PredictiveCoding::default()), &data), &bp);
        eprintln!("{hidden}: default settings {default:?}");
    }
}

#[test]
fn pc_learns_like_bp() {
    let data = random_dataset(256, 6, 4, 9);
    // Labels a small teacher net can fit: the largest of the first four features.
    let labels = data
        .features()
        .chunks(6)
        .map(|x| (0..4).fold(0, |best, k| if x[k] > x[best] { k } else { best }) as u32)
        .collect();
    let data = Dataset::new(data.features().to_vec(), labels, 6, 4).unwrap();
    let net = common::build_net(6, &[32, 16], Activation::Tanh, 4, Activation::Identity, 2);
    let config = TrainConfig {
        optimizer: Optimizer::adam(0.01),
        ..config(16)
    };
    let pc = PredictiveCoding::default();
    let mut pc = Trainer::with_learner(net.clone(), config, Box::new(pc), Device::Cpu).unwrap();
    let mut bp = Trainer::new(net, config, Device::Cpu).unwrap();
    for _ in 0..40 {
        pc.train_epoch(&data, |_, _| {}).unwrap();
        bp.train_epoch(&data, |_, _| {}).unwrap();
    }
    let (p, b) = (pc.evaluate(&data).unwrap(), bp.evaluate(&data).unwrap());
    eprintln!("PC {p:?}; BP {b:?}");
    assert!(
        p.accuracy > 0.9 && p.accuracy > b.accuracy - 0.03,
        "PC {p:?}; BP {b:?}"
    );
}

#[cfg(feature = "gpu")]
#[test]
fn pc_on_the_gpu_matches_the_cpu_and_resumes_bit_for_bit() {
    let data = random_dataset(48, 6, 4, 4);
    let make = |backend: Box<dyn plasticity::backend::Backend>| {
        let pc = PredictiveCoding::default().with_inference(8, 0.2);
        Trainer::with_learner_backend(net(Activation::Tanh), config(16), Box::new(pc), backend)
            .unwrap()
    };
    let mut cpu = make(Box::new(CpuBackend::new()));
    for _ in 0..2 {
        cpu.train_epoch(&data, |_, _| {}).unwrap();
    }
    common::assert_resumes_bit_for_bit(&mut cpu, &data);
    let Some(gpu) = gpu() else { return };
    common::gpu::assert_gpu_run_matches_cpu(make, gpu, &data, 16, 3);
}
