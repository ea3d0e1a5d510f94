"""Model-zoo conformance tests: torchvision and timm models, random init, small inputs.

torchvision 0.28.0's compiled ops are a CUDA build: importing torchvision next to the CPU
torch fails in ``torchvision._meta_registrations`` (``operator torchvision::nms does not
exist``). Its model definitions are pure Python and need none of those ops, so the module
is stubbed in ``sys.modules`` before the first import; nothing else of torchvision is used.
"""

import sys
import types

sys.modules.setdefault("torchvision._meta_registrations",
                       types.ModuleType("torchvision._meta_registrations"))
