//! Ready-made architectures from the literature, as network builders.

use crate::activation::Activation;
use crate::error::{Error, Result};
use crate::layer::{Conv2d, Shape};
use crate::network::{Network, NetworkBuilder};

/// LeNet-5 as BioTorch benchmarks it (`LeNetMNIST`): conv 6@5x5, relu, max pool 2;
/// conv 16@5x5, relu, max pool 2; conv 120@5x5, relu; flatten; dense 84, relu; dense
/// `classes`. The classic input is 32x32: a smaller image (MNIST's 28x28) is
/// zero-padded up to it by the first convolution's padding (2 for 28x28), which is
/// the same as padding the image itself.
///
/// ```
/// use plasticity::layer::Shape;
/// let net = plasticity::models::lenet5(Shape::image(1, 28, 28), 10)?.seed(1).build()?;
/// assert_eq!(net.params().len(), 61_706);
/// # Ok::<(), plasticity::Error>(())
/// ```
pub fn lenet5(input: Shape, classes: usize) -> Result<NetworkBuilder> {
    let Shape::Image { height, width, .. } = input else {
        return Err(Error::config(format!(
            "LeNet-5 needs an image input (CxHxW), got a vector of {input}"
        )));
    };
    if height != width || height > 32 || (32 - height) % 2 != 0 {
        return Err(Error::config(format!(
            "LeNet-5 takes square images of 32x32 or an even amount smaller (28x28 is padded by 2), got {height}x{width}"
        )));
    }
    Ok(Network::builder_for(input)
        .conv2d(
            Conv2d::new(6, 5).padding((32 - height) / 2),
            Activation::Relu,
        )
        .max_pool2d(2)
        .conv2d(Conv2d::new(16, 5), Activation::Relu)
        .max_pool2d(2)
        .conv2d(Conv2d::new(120, 5), Activation::Relu)
        .flatten()
        .dense(84, Activation::Relu)
        .dense(classes, Activation::Identity)
        .init(crate::WeightInit::Kaiming))
}
