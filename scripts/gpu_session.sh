#!/usr/bin/env bash
# One lent GPU machine, one call: train the slowest ready presets side by side, plus the runs the U-Net card
# compares (decoder upsampling, losses, a longer budget), then run the tests that take a CUDA path.
#
#   scripts/gpu_session.sh OUT_DIR [GROUP ...]     groups: dense (default), restoration, baselines,
#   detection, generative, ablations (detection and generative train only the presets whose weight is not
#   in hub/ yet; RETRAIN=1 trains them all)
#
# Needs python3 with torch (CUDA), torchvision, torchmetrics, scikit-image and mlxtend importable and the
# repository on PYTHONPATH. Each run is a plain `zoo train PRESET` (the preset is what a 2-core CPU also
# trains in under 30 minutes; the GPU only makes it quicker, and the card records the device). What comes
# back, per run: the weight folder (hub layout), result.json, metrics.csv and the log, one tar per run.
set -u
OUT=${1:?usage: scripts/gpu_session.sh OUT_DIR [GROUP ...]}
shift
GROUPS_RUN=${*:-dense}
RUNS=${RUNS:-/tmp/zoo-runs}
PY=${PYTHON:-python3}
JOB_TIMEOUT=${JOB_TIMEOUT:-420}
export PYTHONUNBUFFERED=1
mkdir -p "$RUNS" "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$OUT/gpu.txt" 2>&1
$PY -c "import torch, torchvision; print(torch.__version__, torchvision.__version__, torch.cuda.get_device_name())" \
    >>"$OUT/gpu.txt" 2>&1

job() { # NAME PRESET [--set KEY=VALUE ...]
    local name=$1
    shift
    timeout "$JOB_TIMEOUT" $PY -m zoo train "$@" --set progress=false --set threads=1 \
        --out "$RUNS/$name" >"$RUNS/$name.log" 2>&1 &
}

unpublished() { # PRESET: its weight is not in hub/ yet (RETRAIN=1: train it anyway)
    [ -n "${RETRAIN:-}" ] || [ ! -d "hub/$1" ]
}

# Weights come back (one archive each) only for the runs that publish one or draw a card picture from one;
# the other runs bring back their metrics and logs, together.
KEEP=""
dense() {
    # The presets whose weights this group publishes (2026-11-29: unet, fcn, deeplabv3plus).
    job unet unet_resnet8_small.scenes
    job fcn fcn_resnet8_small.scenes
    job deeplabv3plus deeplabv3plus_resnet8_small.scenes
    # The U-Net card's comparisons, on the preset's budget: transposed-convolution decoder, and each loss.
    job unet_transposed unet_resnet8_small.scenes --set 'model_args={"encoder_weights": "mnist", "upsample": "transposed"}'
    for loss in ce weighted_ce dice focal; do
        job "unet_loss_$loss" unet_resnet8_small.scenes --set loss=$loss --set pictures=0
    done
    # How far the same recipe goes with three times the budget (reported, not published).
    job unet_long unet_resnet8_small.scenes --set epochs=15 --set pictures=0
    KEEP="$KEEP unet fcn deeplabv3plus unet_transposed"
}
restoration() {
    job dncnn dncnn.photos
    job espcn_x4 espcn_x4.photos
    # DnCNN at the paper's size (17 x 64) on the same recipe: how far the small one is from it.
    job dncnn_s dncnn.photos --set 'model_args={"depth": 17, "width": 64}'
    KEEP="$KEEP dncnn espcn_x4"
}
baselines() {
    # The same-compute segmentation_models_pytorch baseline of the U-Net card (needs smp importable).
    mkdir -p "$RUNS/smp_baseline"
    timeout "$JOB_TIMEOUT" $PY benchmarks/segmentation_baselines.py --weight unet_resnet8_small.scenes \
        --skip-otsu --save "$RUNS/smp_baseline/result.json" >"$RUNS/smp_baseline.log" 2>&1 &
}
generative() {
    # Every generator preset whose weight is not in hub/ yet (the diffusion ones take minutes on a GPU and
    # ~4 hours on the 2-core CPU).
    for preset in vae.mnist dcgan_cond.mnist pixelcnn.mnist ddpm_unet_mnist_cond.mnist ddpm_unet_mnist.mnist; do
        unpublished "$preset" || continue
        job "${preset%%.*}" "$preset"
        KEEP="$KEEP ${preset%%.*}"
    done
}
ablations() {
    # DnCNN without batch norm on the same recipe: its dark patches come out with a colour cast of +-0.06
    # per channel, which points at the BN statistics of a blind (mixed-sigma) batch.
    job dncnn_nonorm dncnn.photos --set 'model_args={"norm": "none"}'
}
detection() {
    for preset in fasterrcnn_resnet8_small retinanet_resnet8_small maskrcnn_resnet8_small \
        instance_unet_resnet8_small; do
        unpublished "$preset.scenes" || continue
        job "$preset" "$preset.scenes"
        KEEP="$KEEP $preset"
    done
}

if [ -z "${PACKAGE_ONLY:-}" ]; then # PACKAGE_ONLY=1: only pack the runs already in $RUNS
    for group in $GROUPS_RUN; do $group; done
    wait
else
    KEEP=${PACKAGE_ONLY_KEEP:-}
fi

for run in "$RUNS"/*/; do
    name=$(basename "$run")
    files=(result.json metrics.csv config.json)
    case " $KEEP " in *" $name "*) files+=(hub) ;; esac
    present=()
    for f in "${files[@]}"; do [ -e "$run/$f" ] && present+=("$name/$f"); done
    cp "$RUNS/$name.log" "$run/train.log" && present+=("$name/train.log")
    tar -C "$RUNS" -cf "$RUNS/$name.tar" "${present[@]}"
done
# At most 8 files come back: the weight runs alone (six at most), the rest together.
for name in $KEEP; do
    [ -f "$RUNS/$name.tar" ] && gzip -c "$RUNS/$name.tar" >"$OUT/$name.tar.gz" && rm "$RUNS/$name.tar"
done
tar -C "$RUNS" -czf "$OUT/other_runs.tar.gz" $(cd "$RUNS" && ls *.tar 2>/dev/null)

[ -n "${PACKAGE_ONLY:-}${SKIP_TESTS:-}" ] && exit 0
# The CUDA paths of the suite (metrics on cuda, the engine picking cuda with device=auto).
timeout 150 $PY -m pytest -q -p no:cacheprovider tests/recipes/test_cuda.py tests/metrics/test_base.py \
    tests/recipes/test_engine.py >>"$OUT/gpu.txt" 2>&1
ls -la "$OUT"
