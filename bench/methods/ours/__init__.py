"""The attention-distraction anonymizer of Kuang et al., CVPR 2024 ("ours").

Step 1 (anonymisation, Sec. 3.1-3.2):
  * ``psi``: the face classification network Psi (FaceNet with its 8631 classes, or SFace with a codebook of
    identity prototypes);
  * ``ifa``: Grad-CAM at Psi's last convolutional layer (Eq. 1-2), attention distraction (Eq. 3-5), recast f_x;
  * ``ipd``: instance-level probabilistic delegate sampling, the exponential mechanism of Eq. 6;
  * ``vaa``: appearance delegate utility u_a (Eq. 7) over recogniser features;
  * ``gsa``: pose-matched geometry delegate with u_g (Eq. 8) and the contour/mouth recovery giving S-hat;
  * ``shapes``: 68-point landmark helpers.
Step 2 (synthesis, Sec. 3.3): ``step`` (the interface), ``warp`` (training-free renderer), ``gan`` (the paper's
trained generator). ``method`` is the registered Method; heavy imports happen inside these modules only.
"""
