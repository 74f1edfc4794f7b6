"""Latent codecs: everything between the latent y and its reconstruction ŷ.

A model is transforms plus a latent codec. The codec owns quantization, so
every training strategy applies to every architecture. Each codec answers:

- `call(y, training)` -> (ŷ or ỹ for the synthesis, bits per image) under the
  current `quantization` mode;
- `compress(y)` -> {name: strings}, range coded with tfc;
- `decompress(strings, latent_shape)` -> ŷ, identical to the inference-mode
  ŷ of `call`.

It also names the layers that belong to the encoder (`encoder_layers`, frozen
in the hard phase), its extra downsampling (`downsampling`) and its string
names (`string_names`).
"""

import tensorflow as tf

from tfc_sth import entropy_models
from tfc_sth import quantization
from tfc_sth import saun
from tfc_sth import transforms


class MeanScaleHyperprior(tf.keras.layers.Layer):
  """y coded with N(μ, σ²) (and Δ) predicted from a factorized hyper-latent z.

  Minnen, Ballé, Toderici, "Joint Autoregressive and Hierarchical Priors for
  Learned Image Compression", NeurIPS 2018, without the context model.
  """

  string_names = ("y_string", "z_string")
  downsampling = 4

  def __init__(self, latent_channels, num_filters, hyper_channels=None,
               delta=saun.NONE, kernel_parameter="rdft",
               quantization_mode=quantization.NOISE, **kwargs):
    super().__init__(**kwargs)
    self.latent_channels = int(latent_channels)
    self.num_filters = int(num_filters)
    self.hyper_channels = int(hyper_channels or num_filters)
    self.delta = saun.check_delta_mode(delta)
    self.kernel_parameter = kernel_parameter
    num_params = 3 if self.delta == saun.HYPER else 2
    self.hyper_analysis = transforms.hyper_analysis_transform(
        self.num_filters, self.hyper_channels, kernel_parameter)
    self.hyper_synthesis = transforms.hyper_synthesis_transform(
        self.num_filters, num_params * self.latent_channels, kernel_parameter)
    self.hyper_prior = entropy_models.FactorizedPrior(self.hyper_channels)
    self.conditional = entropy_models.GaussianConditional()
    if self.delta == saun.CHANNEL:
      # log Δ = 0: the initial model is the plain model, bit for bit.
      self.log_delta = self.add_weight(
          name="log_delta", shape=(self.latent_channels,),
          initializer="zeros")
    self.quantization = quantization_mode

  @property
  def quantization(self):
    return self.conditional.quantization

  @quantization.setter
  def quantization(self, mode):
    self.hyper_prior.quantization = mode
    self.conditional.quantization = mode

  @property
  def encoder_layers(self):
    return [self.hyper_analysis]

  def build_tables(self):
    self.hyper_prior.build_tables()
    self.conditional.build_tables()

  def _entropy_parameters(self, z_hat):
    params = tf.split(
        self.hyper_synthesis(z_hat), 3 if self.delta == saun.HYPER else 2,
        axis=-1)
    if self.delta == saun.HYPER:
      delta = saun.delta_from_log(params[2])
    elif self.delta == saun.CHANNEL:
      delta = saun.delta_from_log(self.log_delta)
    else:
      delta = None
    return params[0], params[1], delta

  def call(self, y, training=False):
    z = self.hyper_analysis(y)
    z_hat, z_bits = self.hyper_prior(z, training=training)
    loc, log_scale, delta = self._entropy_parameters(z_hat)
    y_hat, y_bits = self.conditional(
        y, loc, log_scale, delta, training=training)
    return y_hat, y_bits + z_bits

  def compress(self, y):
    z = self.hyper_analysis(y)
    z_string = self.hyper_prior.compress(z)
    z_hat = self.hyper_prior.decompress(z_string, tf.shape(z)[1:-1])
    loc, log_scale, delta = self._entropy_parameters(z_hat)
    y_string = self.conditional.compress(y, loc, log_scale, delta)
    return dict(y_string=y_string, z_string=z_string)

  def decompress(self, strings, latent_shape):
    z_hat = self.hyper_prior.decompress(
        strings["z_string"], latent_shape // self.downsampling)
    loc, log_scale, delta = self._entropy_parameters(z_hat)
    return self.conditional.decompress(
        strings["y_string"], loc, log_scale, delta)

  def get_config(self):
    return dict(
        super().get_config(), latent_channels=self.latent_channels,
        num_filters=self.num_filters, hyper_channels=self.hyper_channels,
        delta=self.delta, kernel_parameter=self.kernel_parameter,
        quantization_mode=self.quantization)
