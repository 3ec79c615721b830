"""Registry of anonymisation methods. A new method is one module plus one ``METHODS.register`` line here.

Named variants are the same target with other option defaults (``blur-s8`` is ``blur`` with ``sigma=8``).
"""

from bench.registry import Registry

METHODS: Registry = Registry("method", group="bench.methods")
_reg = METHODS.register

# -- reference and classic baselines (bench/methods/baselines.py) -----------------------------------------------------
_reg("identity", "bench.methods.baselines:Identity", doc="No-op reference: returns the input (ReID ~100%).",
     aliases=("none", "original"))
_reg("blur", "bench.methods.baselines:Blur", doc="Gaussian blur of the face region (paper's 'Blurring' row).")
_reg("blur-s4", "bench.methods.baselines:Blur", doc="Gaussian blur, sigma 4 px.", sigma=4.0)
_reg("blur-s8", "bench.methods.baselines:Blur", doc="Gaussian blur, sigma 8 px (= blur).", sigma=8.0)
_reg("blur-s16", "bench.methods.baselines:Blur", doc="Gaussian blur, sigma 16 px.", sigma=16.0)
_reg("pixelate", "bench.methods.baselines:Pixelate", doc="Mosaic of the face region (paper's 'Pixelation' row).",
     aliases=("pixelation", "mosaic"))
_reg("pixelate-8", "bench.methods.baselines:Pixelate", doc="Mosaic, 8x8 px blocks.", block=8)
_reg("pixelate-16", "bench.methods.baselines:Pixelate", doc="Mosaic, 16x16 px blocks (= pixelate).", block=16)
_reg("pixelate-32", "bench.methods.baselines:Pixelate", doc="Mosaic, 32x32 px blocks.", block=32)
_reg("mask", "bench.methods.baselines:Mask", doc="Solid fill over the face region.", aliases=("blackout",))
_reg("mask-grey", "bench.methods.baselines:Mask", doc="Solid mid-grey fill over the face region.", color=(128, 128, 128))
_reg("noise", "bench.methods.baselines:Noise", doc="Additive Gaussian noise on the face region (seeded).")
_reg("noise-s25", "bench.methods.baselines:Noise", doc="Additive Gaussian noise, sigma 25/255.", sigma=25.0)
_reg("noise-s50", "bench.methods.baselines:Noise", doc="Additive Gaussian noise, sigma 50/255.", sigma=50.0)
# -- external methods evaluated from their saved outputs (bench/methods/folder.py) ------------------------------------
_reg("folder", "bench.methods.folder:Folder", doc="Outputs of any external method read from a folder (root=PATH).",
     aliases=("external",))
# -- the paper's method and its ablations (bench/methods/ours/method.py; Kuang et al. CVPR 2024) -----------------------
_OURS = "bench.methods.ours.method:Ours"
_reg("ours", _OURS, doc="Attention distraction (IFA + VAA + GSA) with the training-free warp synthesiser.")
_reg("ours-no-ifa", _OURS, doc="Table 4 'w/o IFA': no identity feature anonymisation.", ifa="off")
_reg("ours-no-vaa", _OURS, doc="Table 4 'w/o VAA': the original appearance as Z_a.", vaa="off")
_reg("ours-no-gsa", _OURS, doc="Table 4 'w/o GSA': the original geometry as Z_g.", gsa="off")
_reg("ours-ifa-rand", _OURS, doc="Table 5 IFA-Rand: distract K random codebook classes.", ifa="rand")
_reg("ours-ifa-kfn", _OURS, doc="Table 5 IFA-KFN: distract the K farthest (lowest-score) classes.", ifa="kfn")
_reg("ours-gsa-rand", _OURS, doc="Table 5 GSA-Rand: a uniformly random pose-matched delegate geometry.", gsa="rand")
_reg("ours-gsa-kfn", _OURS, doc="Table 5 GSA-KFN: a delegate geometry among the k farthest.", gsa="kfn")
_reg("ours-no-ua", _OURS, doc="Table 6 'w/o u_a': appearance delegate uniform over M_q.", use_ua=False)
_reg("ours-no-ug", _OURS, doc="Table 6 'w/o u_g': geometry delegate uniform over M_q.", use_ug=False)
for _k in range(1, 11):
    _reg(f"ours-k{_k}", _OURS, doc=f"Figure 6: IFA distracts the top {_k} classes (K={_k})"
         + (" (= ours)." if _k == 3 else "."), top_k=_k)
for _eps in (0.5, 1.0, 5.0, 10.0):
    _reg(f"ours-eps{_eps:g}", _OURS, doc=f"IPD privacy budget epsilon={_eps:g}" + (" (= ours)." if _eps == 5 else "."),
         epsilon=_eps)
for _j in (1, 2, 3):
    _reg(f"ours-div-j{_j}", _OURS, doc=f"Figure 4: adds the bottom-{_j} class distraction term (diversity).",
         diversity_j=_j)
