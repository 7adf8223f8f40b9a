//! Checkpoints: resuming is bit-identical on the CPU for every rule, files load in
//! PyTorch's naming, bad files give typed errors, `predict` works from a checkpoint.
//! Also schedules, gradient clipping and divergence naming, which resuming must carry.

mod common;

use std::path::{Path, PathBuf};

#[cfg(feature = "gpu")]
use common::gpu::gpu;
use common::{build_net, random_dataset};
use plasticity::backend::CpuBackend;
use plasticity::checkpoint::Checkpoint;
use plasticity::data::Dataset;
use plasticity::schedule::Schedule;
use plasticity::{Activation, Device, Error, Loss, Network, Optimizer, Rule, TrainConfig, Trainer};
use safetensors::{Dtype, SafeTensors};

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("plasticity-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn net() -> Network {
    build_net(6, &[9, 7], Activation::Tanh, 4, Activation::Identity, 5)
}

fn config(rule: Rule, optimizer: Optimizer) -> TrainConfig {
    TrainConfig {
        rule,
        optimizer,
        batch_size: 8,
        schedule: Schedule::cosine(40, 0.1).with_warmup(3),
        grad_clip: Some(0.5),
        ..TrainConfig::default()
    }
}

fn state(t: &mut Trainer) -> Checkpoint {
    t.checkpoint().unwrap()
}

#[test]
fn resuming_is_bit_identical_for_every_rule_and_optimizer() {
    let data = random_dataset(37, 6, 4, 1);
    for rule in Rule::ALL {
        // Plain SGD's moments stay zero: resuming leaves its arenas unwritten.
        for optimizer in [
            Optimizer::adam(0.01),
            Optimizer::momentum(0.05, 0.9),
            Optimizer::sgd(0.05),
        ] {
            let cfg = config(rule, optimizer);
            let mut a = Trainer::new(net(), cfg, Device::Cpu).unwrap();
            a.train_epoch(&data, |_, _| {}).unwrap();
            a.train_batch(&data, &[3, 1, 4, 1, 5]).unwrap();
            let path = tmp(&format!("resume-{rule}-{optimizer}.safetensors"));
            a.save_checkpoint(&path).unwrap();
            for _ in 0..2 {
                a.train_epoch(&data, |_, _| {}).unwrap();
            }
            let mut b = Trainer::load_checkpoint(&path, Device::Cpu).unwrap();
            assert_eq!(b.steps(), 6, "{rule}");
            assert_eq!(b.epochs(), 1, "{rule}");
            for _ in 0..2 {
                b.train_epoch(&data, |_, _| {}).unwrap();
            }
            let (sa, sb) = (state(&mut a), state(&mut b));
            assert_eq!(sa, sb, "{rule} {optimizer}: resumed run differs");
            assert_eq!(sa.steps, 16);
        }
    }
}

#[test]
fn checkpoints_use_pytorch_names_shapes_and_f32() {
    let mut t = Trainer::new(
        net(),
        config(Rule::FeedbackAlignment, Optimizer::adam(0.01)),
        Device::Cpu,
    )
    .unwrap();
    let path = tmp("names.safetensors");
    t.save_checkpoint(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let n = net();
    for (l, spec) in n.layers().iter().enumerate() {
        // nn.Sequential(Linear, Tanh, Linear, Tanh, Linear): linear layers at 0, 2, 4.
        let m = plasticity::checkpoint::torch_index(n.layers(), l);
        assert_eq!(m, 2 * l);
        let w = st.tensor(&format!("layers.{m}.weight")).unwrap();
        assert_eq!(w.shape(), [spec.outputs(), spec.inputs()]);
        assert_eq!(w.dtype(), Dtype::F32);
        let first = f32::from_le_bytes(w.data()[..4].try_into().unwrap());
        assert_eq!(first, n.weights(l).unwrap()[0]);
        assert_eq!(
            st.tensor(&format!("layers.{m}.bias")).unwrap().shape(),
            [spec.outputs()]
        );
    }
    assert_eq!(st.tensor("feedback.0").unwrap().shape(), [7, 9]); // shaped like W_1
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().as_ref().unwrap();
    assert_eq!(meta["rule"], "fa");
    assert_eq!(meta["layers"], "dense/9:tanh,dense/7:tanh,dense/4:identity");
}

fn expect_checkpoint_error(bytes: &[u8], needle: &str) {
    match Checkpoint::from_bytes(bytes, Path::new("x.safetensors")) {
        Err(Error::Checkpoint { reason, .. }) => {
            assert!(
                reason.contains(needle),
                "{reason:?} does not mention {needle:?}"
            )
        }
        other => panic!("expected a checkpoint error about {needle}, got {other:?}"),
    }
}

/// Rewrites a checkpoint's tensors with `edit`, keeping its metadata.
fn rewrite(
    bytes: &[u8],
    edit: impl Fn(&str, Dtype, Vec<usize>, Vec<u8>) -> Option<(Dtype, Vec<usize>, Vec<u8>)>,
) -> Vec<u8> {
    let st = SafeTensors::deserialize(bytes).unwrap();
    let (_, header) = SafeTensors::read_metadata(bytes).unwrap();
    let mut owned = Vec::new();
    for (name, view) in st.tensors() {
        if let Some(t) = edit(
            &name,
            view.dtype(),
            view.shape().to_vec(),
            view.data().to_vec(),
        ) {
            owned.push((name, t));
        }
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = owned
        .iter()
        .map(|(n, (d, s, b))| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, header.metadata().clone()).unwrap()
}

#[test]
fn bad_files_give_typed_errors_naming_the_problem() {
    let mut t = Trainer::new(
        net(),
        config(Rule::DirectFeedbackAlignment, Optimizer::adam(0.01)),
        Device::Cpu,
    )
    .unwrap();
    let good = t.checkpoint().unwrap().to_bytes().unwrap();
    assert!(Checkpoint::from_bytes(&good, Path::new("ok")).is_ok());

    // Truncated anywhere: said so, with both sizes.
    for cut in [0, 3, 8, 20, good.len() / 2, good.len() - 1] {
        expect_checkpoint_error(&good[..cut], &format!("truncated: {cut} bytes"));
    }
    expect_checkpoint_error(
        &good[..good.len() - 1],
        &format!("need {} (the last 1 bytes are missing)", good.len()),
    );
    let header_end = 8 + u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    expect_checkpoint_error(&good[..20], &format!("its header alone needs {header_end}"));
    // Trailing garbage.
    let mut longer = good.clone();
    longer.push(0);
    expect_checkpoint_error(&longer, "1 unexpected bytes after the last tensor");
    // A text file, long or short, is not a checkpoint.
    let text = b"epoch 1 loss 2.3 accuracy 11%\nepoch 2 loss 2.2 accuracy 14%\n";
    expect_checkpoint_error(text, "not a checkpoint");
    expect_checkpoint_error(b"{\"layers\": [1, 2]}", "not a checkpoint");
    // A wrong dtype.
    let f16 = rewrite(&good, |n, d, s, b| {
        if n == "layers.2.bias" {
            Some((Dtype::I32, s, b))
        } else {
            Some((d, s, b))
        }
    });
    expect_checkpoint_error(&f16, "layers.2.bias has dtype I32");
    // A wrong shape (transposed weights).
    let transposed = rewrite(&good, |n, d, mut s, b| {
        if n == "layers.0.weight" {
            s.reverse();
        }
        Some((d, s, b))
    });
    expect_checkpoint_error(&transposed, "layers.0.weight has shape [6, 9]");
    // A missing tensor.
    // The file is well formed (learner tensors are whatever the learner named), but the
    // learner that resumes it needs feedback.1.
    let missing = rewrite(&good, |n, d, s, b| (n != "feedback.1").then_some((d, s, b)));
    let file = Checkpoint::from_bytes(&missing, Path::new("x.safetensors")).unwrap();
    match Trainer::from_checkpoint(&file, Device::Cpu) {
        Err(Error::Checkpoint { reason, .. }) => {
            assert!(reason.contains("feedback.1 (it is missing"), "{reason}")
        }
        other => panic!("expected a missing-tensor error, got {other:?}"),
    }
    // A NaN in the weights.
    let nan = rewrite(&good, |n, d, s, mut b| {
        if n == "layers.4.weight" {
            b[..4].copy_from_slice(&f32::NAN.to_le_bytes());
        }
        Some((d, s, b))
    });
    expect_checkpoint_error(&nan, "non-finite");
    // A plain safetensors file that is not ours.
    let plain = safetensors::serialize(
        [(
            "w",
            safetensors::tensor::TensorView::new(Dtype::F32, vec![1], &[0u8; 4]).unwrap(),
        )],
        None,
    )
    .unwrap();
    expect_checkpoint_error(&plain, "no metadata");

    // A tensor whose shape does not fill the bytes it is given (the header says
    // layers.0.bias holds 8 values in the 9 values' bytes).
    let header_end = 8 + u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&good[8..header_end]).unwrap();
    header["layers.0.bias"]["shape"] = serde_json::json!([8]);
    let mut text = serde_json::to_vec(&header).unwrap();
    text.resize(text.len().next_multiple_of(8), b' ');
    let mut reshaped = (text.len() as u64).to_le_bytes().to_vec();
    reshaped.extend(&text);
    reshaped.extend(&good[header_end..]);
    expect_checkpoint_error(&reshaped, "not a valid safetensors header");

    // Loading reads the file tensor by tensor, with the same checks.
    let path = tmp("cut.safetensors");
    std::fs::write(&path, &good[..good.len() - 5]).unwrap();
    match Checkpoint::load(&path) {
        Err(Error::Checkpoint {
            reason,
            path: named,
        }) => {
            assert!(reason.contains("the last 5 bytes are missing"), "{reason}");
            assert_eq!(named, path);
        }
        other => panic!("expected a truncated-file error, got {other:?}"),
    }
    std::fs::write(&path, &nan).unwrap();
    assert!(
        matches!(Checkpoint::load(&path), Err(Error::Checkpoint { reason, .. }) if reason.contains("non-finite"))
    );
    std::fs::write(&path, &good).unwrap();
    assert_eq!(
        Checkpoint::load(&path).unwrap(),
        Checkpoint::from_bytes(&good, Path::new("ok")).unwrap()
    );

    // A missing file is an I/O error.
    assert!(matches!(
        Checkpoint::load(tmp("does-not-exist.safetensors")),
        Err(Error::Io { .. })
    ));
}

#[test]
fn another_architecture_or_rule_is_refused_and_changes_nothing() {
    let data = random_dataset(16, 6, 4, 2);
    let cfg = config(Rule::Backprop, Optimizer::adam(0.01));
    let mut wide = Trainer::new(
        build_net(6, &[10, 7], Activation::Tanh, 4, Activation::Identity, 5),
        cfg,
        Device::Cpu,
    )
    .unwrap();
    wide.train_epoch(&data, |_, _| {}).unwrap();
    let path = tmp("wide.safetensors");
    wide.save_checkpoint(&path).unwrap();
    let ckpt = Checkpoint::load(&path).unwrap();

    let mut t = Trainer::new(net(), cfg, Device::Cpu).unwrap();
    let before = state(&mut t);
    match t.restore(&ckpt) {
        Err(Error::Checkpoint { reason, .. }) => {
            assert!(reason.contains("architecture"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    let mut other_rule = Trainer::new(
        net(),
        config(Rule::FeedbackAlignment, Optimizer::adam(0.01)),
        Device::Cpu,
    )
    .unwrap();
    let mut bp = Trainer::new(net(), cfg, Device::Cpu).unwrap();
    match other_rule.restore(&bp.checkpoint().unwrap()) {
        Err(Error::Checkpoint { reason, .. }) => assert!(reason.contains("rule"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(state(&mut t), before);
}

#[test]
fn a_crash_mid_save_leaves_the_old_checkpoint() {
    let data = random_dataset(16, 6, 4, 3);
    let mut t = Trainer::new(
        net(),
        config(Rule::Backprop, Optimizer::adam(0.01)),
        Device::Cpu,
    )
    .unwrap();
    let path = tmp("atomic.safetensors");
    t.save_checkpoint(&path).unwrap();
    let old = std::fs::read(&path).unwrap();
    // A save that fails half-way (its target directory vanished) must not touch `path`,
    // and a stale half-written temporary file beside it changes nothing either.
    t.train_epoch(&data, |_, _| {}).unwrap();
    assert!(t.save_checkpoint(tmp("no-such-dir/x.safetensors")).is_err());
    std::fs::write(
        path.with_extension("safetensors.tmp123"),
        &old[..old.len() / 2],
    )
    .unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), old);
    assert!(Checkpoint::load(&path).is_ok());
    // A successful save replaces it whole.
    t.save_checkpoint(&path).unwrap();
    assert_eq!(Checkpoint::load(&path).unwrap().steps, 2);
}

/// `save` streams the tensors to the file; what lands there is `to_bytes`'s content, for
/// a learner with tensors and moments of its own too. A learner tensor whose shape does
/// not hold its values is refused before anything is written.
#[test]
fn a_streamed_file_holds_the_tensor_bytes_of_to_bytes() {
    let data = random_dataset(16, 6, 4, 3);
    let learner = Box::new(plasticity::learner::KolenPollack::default());
    let mut t = Trainer::with_learner_backend(
        net(),
        config(Rule::Backprop, Optimizer::adam(0.01)),
        learner,
        Box::new(CpuBackend::new()),
    )
    .unwrap();
    t.train_epoch(&data, |_, _| {}).unwrap();
    let checkpoint = state(&mut t);
    assert!(checkpoint
        .learner_optimizer_state
        .iter()
        .all(|s| !s.is_empty()));
    let path = tmp("streamed.safetensors");
    checkpoint.save(&path).unwrap();
    // The metadata's key order may differ between two serializations (a hash map's);
    // the tensors' bytes after the header may not.
    let (file, bytes) = (
        std::fs::read(&path).unwrap(),
        checkpoint.to_bytes().unwrap(),
    );
    let data_start = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert_eq!(file.len(), bytes.len());
    assert!(file[data_start..] == bytes[data_start..]);
    assert_eq!(Checkpoint::load(&path).unwrap(), checkpoint);
    // The trainer writes the same file from its buffers, a piece at a time.
    let from_trainer = tmp("streamed-by-trainer.safetensors");
    t.save_checkpoint(&from_trainer).unwrap();
    let file = std::fs::read(&from_trainer).unwrap();
    assert_eq!(file.len(), bytes.len());
    assert!(file[data_start..] == bytes[data_start..]);
    assert_eq!(Checkpoint::load(&from_trainer).unwrap(), checkpoint);

    let mut bad = checkpoint.clone();
    bad.tensors[0].values.pop();
    let target = tmp("never-written.safetensors");
    for err in [bad.save(&target).unwrap_err(), bad.to_bytes().unwrap_err()] {
        assert!(
            matches!(&err, Error::Checkpoint { reason, .. } if reason.contains("does not hold")),
            "{err}"
        );
    }
    assert!(!target.exists());
}

/// A trainer saves tensors larger than the 4 MB it reads back at once in several
/// pieces; the file holds them whole.
#[test]
fn a_trainer_saves_tensors_larger_than_one_piece() {
    let net = build_net(784, &[1400], Activation::Tanh, 10, Activation::Identity, 3);
    let data = random_dataset(32, 784, 10, 6);
    let mut t = Trainer::new(
        net,
        config(Rule::Backprop, Optimizer::momentum(0.01, 0.9)),
        Device::Cpu,
    )
    .unwrap();
    t.train_batch(&data, &(0..8).collect::<Vec<_>>()).unwrap();
    let checkpoint = state(&mut t);
    assert!(checkpoint.params.len() > 1 << 20);
    let path = tmp("pieces.safetensors");
    t.save_checkpoint(&path).unwrap();
    assert_eq!(Checkpoint::load(&path).unwrap(), checkpoint);
}

#[test]
fn predict_from_a_checkpoint_on_either_backend() {
    let data = random_dataset(40, 6, 4, 4);
    let mut t = Trainer::new(
        net(),
        config(Rule::DirectFeedbackAlignment, Optimizer::adam(0.02)),
        Device::Cpu,
    )
    .unwrap();
    for _ in 0..20 {
        t.train_epoch(&data, |_, _| {}).unwrap();
    }
    let path = tmp("predict.safetensors");
    t.save_checkpoint(&path).unwrap();
    let ckpt = Checkpoint::load(&path).unwrap();
    let mut cpu =
        Trainer::from_checkpoint_with_backend(&ckpt, Box::new(CpuBackend::new())).unwrap();
    let n = data.len();
    let p = cpu.predict(data.features(), n).unwrap();
    assert_eq!(p.len(), n * 4);
    let mut correct = 0;
    for (row, &label) in p.chunks(4).zip(data.labels()) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert!(row.iter().all(|&v| (0.0..=1.0).contains(&v)));
        let best = (0..4).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
        correct += usize::from(best == label as usize);
    }
    let acc = cpu.evaluate(&data).unwrap().accuracy;
    assert!(
        (correct as f32 / n as f32 - acc).abs() < 1e-6,
        "{correct} vs {acc}"
    );
    // A shape mismatch is caught at once, with the sizes in the message.
    let err = cpu.predict(&data.features()[..7], 2).unwrap_err();
    assert!(err.to_string().contains("2 samples x 6 features"), "{err}");

    #[cfg(feature = "gpu")]
    if let Some(backend) = gpu() {
        let mut g = Trainer::from_checkpoint_with_backend(&ckpt, Box::new(backend)).unwrap();
        let q = g.predict(data.features(), n).unwrap();
        for (a, b) in p.iter().zip(&q) {
            assert!((a - b).abs() <= 1e-5, "cpu {a} gpu {b}");
        }
    }
}

#[test]
fn mse_models_predict_raw_outputs() {
    let cfg = TrainConfig {
        loss: Loss::MeanSquaredError,
        ..config(Rule::Backprop, Optimizer::sgd(0.1))
    };
    let mut t = Trainer::new(net(), cfg, Device::Cpu).unwrap();
    let x = vec![0.25f32; 12];
    let p = t.predict(&x, 2).unwrap();
    let data = Dataset::new(x, vec![0, 0], 6, 4).unwrap();
    assert_eq!(p, t.outputs(&data, &[0, 1]).unwrap());
}

#[test]
fn a_step_schedule_equals_setting_the_rate_by_hand() {
    let data = random_dataset(16, 6, 4, 5);
    let plain = TrainConfig {
        schedule: Schedule::constant(),
        grad_clip: None,
        ..config(Rule::FeedbackAlignment, Optimizer::sgd(0.1))
    };
    let scheduled = TrainConfig {
        schedule: Schedule::step(2, 0.5),
        ..plain
    };
    let mut a = Trainer::new(net(), scheduled, Device::Cpu).unwrap();
    let mut b = Trainer::new(net(), plain, Device::Cpu).unwrap();
    for step in 0..6 {
        let idx: Vec<usize> = (0..8).map(|i| (i + step) % 16).collect();
        a.train_batch(&data, &idx).unwrap();
        b.set_optimizer(Optimizer::sgd(0.1 * 0.5f32.powi(step as i32 / 2)))
            .unwrap();
        b.train_batch(&data, &idx).unwrap();
    }
    assert_eq!(a.network().unwrap().params(), b.network().unwrap().params());
}

#[test]
fn clipping_bounds_the_step_for_every_rule() {
    let data = random_dataset(8, 6, 4, 6);
    let all: Vec<usize> = (0..8).collect();
    for rule in Rule::ALL {
        let cfg = TrainConfig {
            schedule: Schedule::constant(),
            grad_clip: Some(1e-3),
            ..config(rule, Optimizer::sgd(1.0))
        };
        let mut t = Trainer::new(net(), cfg, Device::Cpu).unwrap();
        let before = t.network().unwrap().params().to_vec();
        let direction = t.update_direction(&data, &all).unwrap();
        let norm = direction.iter().map(|g| g * g).sum::<f32>().sqrt();
        t.train_batch(&data, &all).unwrap();
        let after = t.network().unwrap().params().to_vec();
        let moved = before
            .iter()
            .zip(&after)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f32>()
            .sqrt();
        if norm > 1e-3 {
            assert!(
                (moved - 1e-3).abs() < 1e-5,
                "{rule}: moved {moved}, direction {norm}"
            );
        } else {
            assert!(
                (moved - norm).abs() < 1e-6,
                "{rule}: moved {moved}, direction {norm}"
            );
        }
    }
}

#[test]
fn a_non_finite_loss_names_the_step_and_the_layer() {
    let data = random_dataset(8, 6, 4, 7);
    let mut n = build_net(6, &[9, 7], Activation::Identity, 4, Activation::Identity, 5);
    // Finite weights whose products overflow f32 two layers in.
    n.set_params(&vec![1e25; n.params().len()]).unwrap();
    let mut t = Trainer::new(n, config(Rule::Backprop, Optimizer::sgd(0.1)), Device::Cpu).unwrap();
    let before = t.network().unwrap();
    match t.train_batch(&data, &[0, 1, 2]) {
        Err(Error::Diverged { step, what, .. }) => {
            assert_eq!(step, 1);
            assert!(
                what.contains("loss") && what.contains("output of layer 1"),
                "{what}"
            );
        }
        other => panic!("{other:?}"),
    }
    // The failed step changed no parameter.
    assert_eq!(t.network().unwrap(), before);
}

#[cfg(feature = "gpu")]
#[test]
fn gpu_clipping_matches_the_cpu() {
    use plasticity::backend::{Backend, Mat};
    let Some(mut g) = gpu() else { return };
    let mut c = CpuBackend::new();
    // The kernel alone: a norm of 5 clipped to 1, a norm under the bound left alone.
    for (values, max, expect) in [
        (vec![3.0f32, 0.0, 4.0], 1.0f32, vec![0.6f32, 0.0, 0.8]),
        (vec![0.3, 0.4, 0.0], 1.0, vec![0.3, 0.4, 0.0]),
        (
            vec![f32::INFINITY, 1.0, 0.0],
            1.0,
            vec![f32::INFINITY, 1.0, 0.0],
        ),
    ] {
        for b in [&mut g as &mut dyn Backend, &mut c] {
            let buf = b.alloc(5).unwrap();
            b.write(buf, 1, &values).unwrap();
            b.clip_grad_norm(Mat::new(buf, 1, 1, 3), max, Mat::new(buf, 4, 1, 1))
                .unwrap();
            let out = b.read(buf, 0, 5).unwrap();
            assert_eq!(out[0], 0.0, "{}", b.name());
            for (o, e) in out[1..4].iter().zip(&expect) {
                assert!((o - e).abs() < 1e-6 || o == e, "{}: {out:?}", b.name());
            }
        }
    }
    // Whole runs: six clipped SGD-momentum steps agree within the GPU tests' tolerance.
    let data = random_dataset(32, 6, 4, 8);
    for rule in [Rule::Backprop, Rule::DirectFeedbackAlignment] {
        let cfg = TrainConfig {
            grad_clip: Some(0.05),
            ..config(rule, Optimizer::momentum(0.1, 0.9))
        };
        let mut tc = Trainer::with_backend(net(), cfg, Box::new(CpuBackend::new())).unwrap();
        let mut tg = Trainer::with_backend(net(), cfg, Box::new(gpu().unwrap())).unwrap();
        for step in 0..6 {
            let idx: Vec<usize> = (0..8).map(|i| (i * 3 + step) % 32).collect();
            tc.train_batch(&data, &idx).unwrap();
            tg.train_batch(&data, &idx).unwrap();
        }
        let (pc, pg) = (tc.network().unwrap(), tg.network().unwrap());
        for (a, b) in pc.params().iter().zip(pg.params()) {
            assert!(
                (a - b).abs() <= 2e-6 + 1e-5 * a.abs(),
                "{rule}: cpu {a} gpu {b}"
            );
        }
    }
}

/// LeNet-5's checkpoint holds exactly the `state_dict` of the same network written as
/// `nn.Sequential(Conv2d(1, 6, 5, padding=2), ReLU(), MaxPool2d(2), Conv2d(6, 16, 5),
/// ReLU(), MaxPool2d(2), Conv2d(16, 120, 5), ReLU(), Flatten(), Linear(120, 84), ReLU(),
/// Linear(84, 10))` held as `self.layers`: PyTorch's module indices 0, 3, 6, 9 and 11.
#[test]
fn a_lenet_checkpoint_is_the_state_dict_of_the_same_nn_sequential() {
    let net = plasticity::models::lenet5(plasticity::Shape::image(1, 28, 28), 10)
        .unwrap()
        .seed(2)
        .build()
        .unwrap();
    let t = Trainer::new(
        net.clone(),
        config(Rule::Backprop, Optimizer::adam(0.01)),
        Device::Cpu,
    );
    let bytes = t.unwrap().checkpoint().unwrap().to_bytes().unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let expected: [(&str, &[usize]); 10] = [
        ("layers.0.weight", &[6, 1, 5, 5]),
        ("layers.0.bias", &[6]),
        ("layers.3.weight", &[16, 6, 5, 5]),
        ("layers.3.bias", &[16]),
        ("layers.6.weight", &[120, 16, 5, 5]),
        ("layers.6.bias", &[120]),
        ("layers.9.weight", &[84, 120]),
        ("layers.9.bias", &[84]),
        ("layers.11.weight", &[10, 84]),
        ("layers.11.bias", &[10]),
    ];
    let mut names: Vec<String> = st
        .names()
        .into_iter()
        .filter(|n| n.starts_with("layers."))
        .map(|n| n.to_string())
        .collect();
    names.sort();
    let mut want: Vec<String> = expected.iter().map(|(n, _)| n.to_string()).collect();
    want.sort();
    assert_eq!(names, want);
    for (name, shape) in expected {
        assert_eq!(st.tensor(name).unwrap().shape(), shape, "{name}");
    }
    // The values are the network's, in PyTorch's [out, in, kh, kw] order.
    let w = st.tensor("layers.3.weight").unwrap();
    let first: Vec<f32> = w.data()[..8]
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(first, net.weights(2).unwrap()[..2]);
}
