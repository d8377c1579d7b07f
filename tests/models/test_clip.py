"""CLIP towers against open_clip's (same state_dict, same embeddings), the tokenizer, the zero-shot helper."""

from __future__ import annotations

import warnings

import pytest
import torch

import zoo
from zoo.models.clip import zero_shot_classifier
from zoo.text import EOT, UNK, CaptionTokenizer, TruncationWarning, get_tokenizer, train_tokenizer

CORPUS = ["a 7 to the left of a small 3", "an 8 above a large 1", "the number seven", "a handwritten 4"]
SMALL = {"embed_dim": 32, "text": {"width": 32, "layers": 2, "heads": 2}, "context_length": 12}


@pytest.fixture(scope="module")
def tokenizer() -> CaptionTokenizer:
    return train_tokenizer(CORPUS, context_length=12)


def _small(arch: str, tokenizer: CaptionTokenizer) -> torch.nn.Module:
    vision = (
        {"width": 32, "layers": 2, "heads": 2, "patch_size": 16}
        if arch == "clip_vit_tiny"
        else {"width": 8, "heads": 2}
    )
    torch.manual_seed(0)
    return zoo.create_model(arch, vocab_size=tokenizer.vocab_size, vision=vision, **SMALL).eval()


@pytest.mark.parametrize("arch", ["clip_vit_tiny", "clip_resnet_tiny"])
def test_open_clip_loads_the_state_dict_strictly_and_embeds_the_same(arch, tokenizer):
    open_clip_model = pytest.importorskip("open_clip.model")
    model = _small(arch, tokenizer)
    theirs = open_clip_model.CLIP(**model.open_clip_config()).eval()
    theirs.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    tokens = tokenizer(CORPUS[:3])
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(x), theirs.encode_image(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(
            model.encode_text(tokens), theirs.encode_text(tokens), atol=1e-5, rtol=1e-5
        )
        assert torch.equal(model.logit_scale, theirs.logit_scale)


def test_text_embedding_depends_on_word_order(tokenizer):
    model = _small("clip_vit_tiny", tokenizer)
    a, b = model.encode_text(tokenizer(["a 7 to the left of a 3", "a 3 to the left of a 7"]))
    assert not torch.allclose(a, b)


def test_tokenizer_specials_unknown_words_and_truncation(tokenizer, tmp_path):
    ids = tokenizer.encode(["a 7 above a zebra"])
    assert ids.shape == (1, 12) and ids.dtype.name == "int64"
    assert tokenizer.unk_id in ids[0]  # an unknown word is a token, not an error
    assert ids[0].argmax() == 6 and ids[0, 6] == tokenizer.eot_id == tokenizer.vocab_size - 1
    assert tokenizer.words("A 7 ABOVE a zebra") == ["a", "7", "above", "a", UNK]  # lower-cased
    with pytest.warns(TruncationWarning, match="truncated"):
        long = tokenizer.encode(["a 7 " * 20])
    assert long[0, -1] == tokenizer.eot_id  # the end-of-text token survives the cut
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tokenizer.encode(["a 7"])  # no warning for short text
    path = tokenizer.save(tmp_path / "tokenizer.json")
    again = get_tokenizer(tmp_path)
    assert (again.encode(CORPUS) == tokenizer.encode(CORPUS)).all()
    assert again.vocabulary[-1] == EOT
    with pytest.raises(TypeError, match="strings"):
        tokenizer.encode([3])
    with pytest.raises(FileNotFoundError):
        CaptionTokenizer.from_file(path.with_name("missing.json"))


def test_zero_shot_classifier_averages_templates(tokenizer):
    model = _small("clip_vit_tiny", tokenizer)
    classes = zero_shot_classifier(model, tokenizer, ["7", "3"], ["a {}", "the number {}"])
    assert classes.shape == (2, 32)
    torch.testing.assert_close(classes.norm(dim=1), torch.ones(2))
    one = model.encode_text(tokenizer(["a 7", "the number 7"]), normalize=True).mean(0)
    torch.testing.assert_close(classes[0], one / one.norm())
    with pytest.raises(ValueError, match="where the class name goes"):
        zero_shot_classifier(model, tokenizer, ["7"], ["a digit"])


def test_clear_errors_for_bad_inputs(tokenizer):
    model = _small("clip_vit_tiny", tokenizer)
    with pytest.raises(ValueError, match="integer ids"):
        model.encode_text(torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="images must be"):
        model.encode_image(torch.zeros(1, 3, 32, 32))
    with pytest.raises(zoo.ConfigError, match="multiple of patch_size"):
        zoo.create_model("clip_vit_tiny", img_size=60)
