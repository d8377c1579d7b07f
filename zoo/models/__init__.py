"""The model families. Importing a family module registers its builders; add new families here."""

from zoo.models import autoencoder, cnn, deeplab, fcn, mlp, resnet, restoration, rnn, unet  # noqa: F401
