"""Step 2 of Kuang et al., CVPR 2024 (Sec. 3.3-3.4): the conditional generator G = (E, T), its discriminator D,
the L1-L6 training objective (Eq. 9-13) and the ``gan`` synthesiser that renders step 1's outputs with a checkpoint.

Modules (torch is imported inside them, never here):
  * ``inputs``: how Z_a (foreground face of the appearance delegate) and Z_g (structure map + background) are built;
  * ``networks``: appearance encoder E, conditional translator T with AdaIN, multi-scale discriminator D;
  * ``losses``: Eq. 9-13, the identity network wrapper and the perceptual backbones;
  * ``data``: aligned training crops with 68-point landmarks, prepared once and cached;
  * ``train``: the 1:1 reconstruction / cycle swap-reconstruction loop (``bench train ours``);
  * ``synth``: :class:`~bench.methods.ours.gan.synth.GanSynthesizer`;
  * ``cli``: the click command attached to the main CLI as ``bench train``.
"""
