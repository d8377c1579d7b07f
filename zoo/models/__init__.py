"""The model families. Importing a family module registers its builders; add new families here."""

from zoo.models import autoencoder, cnn, deeplab, diffusion, fcn, mlp, resnet, restoration, rnn, unet  # noqa: F401
from zoo.models import detection  # noqa: F401
from zoo.models import proposal_free  # noqa: F401  (after unet, whose EncoderUNet it builds on)
from zoo.models import vae  # noqa: F401
