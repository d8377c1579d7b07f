"""The model families. Importing a family module registers its builders; add new families here."""

from zoo.models import autoencoder, cnn, mlp, resnet, rnn, unet  # noqa: F401
