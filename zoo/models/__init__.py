"""The model families. Importing a family module registers its builders; add new families here."""

from zoo.models import (  # noqa: F401
    autoencoder,
    cam,
    clip,
    cnn,
    deeplab,
    detection,
    diffusion,
    fcn,
    gan,
    mlp,
    pixelcnn,
    proposal_free,
    resnet,
    restoration,
    rnn,
    self_supervised,
    unet,
    vae,
    video_colorization,
)
