#!/usr/bin/env bash
# The GPU measurements that issues 16 (Mamba-1 speed) and 18 (Mamba-2) still lack, in parts that each fit one
# device call (10 minutes at most), so that a session with device time spends it on the runs, not on set-up.
#
# On the GPU machine, from the checkout's root, with the peers' mamba_ssm wheel copied into the ignored
# .peers/ folder and carried (run(carry=[".peers"], ...); ../shared/peers/README.md):
#
#     bash benchmarks/gpu_session.sh tests          # GPU parity tests of every kernel and fused path (~4 min)
#     bash benchmarks/gpu_session.sh step           # 130m training step: dispatches, fused norm, compile (~6 min)
#     bash benchmarks/gpu_session.sh scan ssd       # scan and SSD against mamba_ssm live (~6 min)
#     bash benchmarks/gpu_session.sh norm short ncu # fused norm, short-sequence step, backward profile (~5 min)
#
# Parts: tests, step, scan, ssd, norm, short, ncu. Each writes its JSON and log into $OUT (a folder that
# comes back from the device) and goes on to the next part when one fails; each runs under its own
# time limit (PART_LIMIT seconds, default 280) so that one slow compile cannot take the whole call.
# The mambatune package is made importable without installing it (links to the checkout's folders);
# mamba_ssm goes on PYTHONPATH from the wheel, and tests that must not see it run without it.
set -u
OUT=${OUT:-/tmp/gpu_session_out}
LIMIT=${PART_LIMIT:-280}
mkdir -p "$OUT" /tmp/pkg/mambatune
for d in core kernels domains pipelines benchmarks; do ln -sfn "$PWD/$d" "/tmp/pkg/mambatune/$d"; done
if ls .peers/mamba_ssm-*.whl >/dev/null 2>&1 && [ ! -d /tmp/site/mamba_ssm ]; then
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .peers/mamba_ssm-*.whl
fi
PKG=/tmp/pkg
PEER=/tmp/pkg:/tmp/site
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/device.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$OUT/device.txt"
git log -1 --format='commit %H %cI' 2>/dev/null | tee -a "$OUT/device.txt"

part() {  # part NAME PYTHONPATH COMMAND...: one measurement under the time limit, logged to $OUT/NAME.log
    local name=$1 path=$2
    shift 2
    local t0
    t0=$(date +%s)
    echo "== $name: $*"
    PYTHONPATH=$path PYTHONUNBUFFERED=1 timeout "$LIMIT" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    echo "== $name: rc=$rc after $(( $(date +%s) - t0 )) s"
    tail -n 25 "$OUT/$name.log"
}

for what in "$@"; do
    case $what in
        tests)
            part tests "$PKG" python3 -m pytest -q -m gpu -x -p no:cacheprovider \
                tests/kernels/test_norm.py tests/core/test_fused_add_norm.py tests/core/test_mixer_scan_layout.py \
                tests/kernels/test_selective_scan_triton.py tests/core/test_model_gpu.py tests/core/test_compile.py \
                tests/kernels/test_ssd.py tests/kernels/test_causal_conv1d_triton.py ;;
        step)
            # the dispatches (views, time-contiguous, fused norm) at both shapes, then fp32 and head-only
            part step "$PEER" python3 -m mambatune.benchmarks.train_step --shapes 8x2048,2x8192 \
                --configs bf16-autocast:full --scan-variants auto,auto:tc,auto:tc:fused --json "$OUT/step.json"
            part step_more "$PEER" python3 -m mambatune.benchmarks.train_step --shapes 8x2048 \
                --configs fp32:full,bf16-autocast:head-only --scan-variants auto:tc --compile \
                --json "$OUT/step_more.json" ;;
        scan)
            part scan "$PEER" python3 -m mambatune.benchmarks.scan --backends mamba_ssm_cuda,triton,triton_channels_last \
                --budget 0.3 --sweep --sweep-variants "long;long bwd<=128 regs;short (triton.py)" --json "$OUT/scan.json" ;;
        ssd)
            part ssd "$PEER" python3 -m mambatune.benchmarks.ssd --launch --train-step --packing --json "$OUT/ssd.json" ;;
        norm)
            part norm "$PEER" python3 -m mambatune.benchmarks.norm --json "$OUT/norm.json" ;;
        short)
            part short "$PEER" python3 -m mambatune.benchmarks.train_step --short --configs bf16-autocast:full,fp32:full \
                --scan-variants auto,auto:tc:fused --compile --compile-mode reduce-overhead --json "$OUT/short.json" ;;
        ncu)
            # stall reasons of the Mamba-1 scan's backward kernel at B4 D1536 L2048 N16 (one launch profiled)
            part ncu "$PKG" ncu --clock-control none --set full -k regex:_long_bwd -c 1 -o "$OUT/scan_bwd" \
                python3 -m mambatune.benchmarks.scan --backends triton --budget 0.05
            ncu --import "$OUT/scan_bwd.ncu-rep" --page details --section WarpStateStats --section Occupancy \
                --section SchedulerStats > "$OUT/ncu_summary.txt" 2>&1 && head -n 80 "$OUT/ncu_summary.txt" ;;
        *)
            echo "unknown part '$what': tests, step, scan, ssd, norm, short, ncu"
            exit 2 ;;
    esac
done
ls -la "$OUT"
