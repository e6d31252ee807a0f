"""PyTorch eager twins of Holo's transformer networks (DeiT, TimeSformer, XViT), Holo's names.

Imported by bench/model_baseline.py, whose count / forward / script / bench / timm commands build
these through model_baseline.build(NAME, ...). Implemented here without timm or einops.

Architecture (the specification the C++ side of models/ is reviewed against)
============================================================================

Common to all three. Parameter names are Holo's; they follow timm / the official repositories
except the classifier, which is `heads.0` as in every Holo network (one Linear(D, classes) per
entry of --heads, default one head of --classes). All LayerNorms eps 1e-6, GELU exact (erf),
qkv Linear with bias, attention scale head_dim**-0.5, MLP hidden = 4*D, no dropout (eval and
train alike). Init like timm: trunc_normal std .02 (truncated at +-2 absolute) for Linear
weights, cls_token(s), pos_embed(s) and time/temp embeddings; zero Linear biases; LayerNorm
weight 1, bias 0; the patch-embedding Conv2d keeps PyTorch's default init. Tests load weights,
so init only matters for counts.

Presets (D, heads; depth = 12 blocks each): deit_ti (192,3), deit_s (384,6), deit_b (768,12),
timesformer_s (384,6), timesformer_b (768,12), xvit_s (384,6), xvit_b (768,12). The families
`deit`, `timesformer`, `xvit` take --embed-dim, --num-heads, --depth (number of blocks) for small
test networks; without them a family has D 384, 6 heads and 18 blocks (18: model_baseline.py's
--depth default, as holo::ModelOptions' depth default, which the C++ families take as blocks).
A preset keeps its depth 12 whatever --depth says (as the ResNet presets keep theirs), and an
--embed-dim or --num-heads other than the preset's is an error (as models/network.cc's
resolve_model).
P = patch size (--patch-size, default 16), S = (image_size/P)^2 patches per frame
(--image-size, default 224; `bench` defaults it to --size). Input clips are always
N x 3 x T x H x W float tensors (T frames). The input's H and W must equal the image size (no
interpolation: a clear error otherwise); TimeSformer and XViT also need T = --frames (their
time embeddings are built for it).

A transformer block ("pre-norm block") with D, heads h, dh = D/h:
  params norm1 (LayerNorm D), attn.qkv (Linear D->3D), attn.proj (Linear D->D), norm2,
  mlp.fc1 (Linear D->4D), mlp.fc2 (Linear 4D->D);
  x = x + proj(attn(norm1 x)); x = x + fc2(gelu(fc1(norm2 x))).
  attn(x) for x of shape (B, N, D): qkv(x) viewed (B, N, 3, h, dh), permuted to q, k, v of shape
  (B, h, N, dh); a = softmax(q k^T * dh**-0.5) over the last axis; out = a v -> (B, N, h*dh).

1. DeiT (timm VisionTransformer without distillation token). Params: patch_embed.proj
   (Conv2d(3, D, P, stride P, bias)), cls_token [1,1,D], pos_embed [1,S+1,D], blocks.{i}.norm1,
   blocks.{i}.attn.qkv (Linear D->3D), blocks.{i}.attn.proj (D->D), blocks.{i}.norm2,
   blocks.{i}.mlp.fc1 (D->4D), blocks.{i}.mlp.fc2, norm, heads.0.
   Forward on clips N x 3 x T x H x W: every frame is an image (N*T images, ordered (n t));
   patches = proj(frame) flattened row-major (h w) -> (N*T, S, D);
   x = cat(cls, patches) + pos_embed; pre-norm blocks x = x + proj(attn(norm1 x));
   x = x + fc2(gelu(fc1(norm2 x))); f = norm(x)[:,0]; features = mean of f over the T frames of
   each clip (N x D); logits = heads.0(features). With T=1 this is exactly timm's DeiT.
   Check: deit_s with 1000 classes has 22,050,664 parameters; deit_ti 5,717,416;
   deit_b 86,567,656.

2. TimeSformer, divided space-time attention, exactly as facebookresearch/TimeSformer's vit.py
   (attention_type='divided_space_time'). Params: patch_embed.proj, cls_token, pos_embed
   [1,S+1,D], time_embed [1,T,D] (T = --frames, fixed at build), blocks.{i}.{norm1, attn.qkv,
   attn.proj, temporal_norm1, temporal_attn.qkv, temporal_attn.proj, temporal_fc (Linear D->D),
   norm2, mlp.fc1, mlp.fc2}, norm, heads.0.
   Forward (B clips, T frames, W = patches per row, tokens ordered (h w t), t fastest):
   x = patch_embed(frames) (B*T, S, D); x = cat(cls_token.expand(B*T), x) + pos_embed;
   cls = x[:B, 0:1]; x = x[:,1:]; x = rearrange '(b t) n m -> (b n) t m'; x = x + time_embed;
   x = rearrange '(b n) t m -> b (n t) m'; x = cat(cls, x).
   Block: xt = x[:,1:]; temporal: r = temporal_attn(temporal_norm1(rearrange(xt,
   'b (h w t) m -> (b h w) t m'))) -> back to 'b (h w t) m'; r = temporal_fc(r);
   xt = x[:,1:] + r. Spatial: init_cls = x[:,0:1]; cls_t = init_cls repeated per frame ->
   ((b t),1,m); xs = rearrange(xt,'b (h w t) m -> (b t) (h w) m'); xs = cat(cls_t, xs);
   rs = attn(norm1(xs)); cls_out = mean over t of rs[:,0] (b,1,m);
   rs = rearrange(rs[:,1:], '(b t) (h w) m -> b (h w t) m');
   x = cat(init_cls, xt) + cat(cls_out, rs); x = x + mlp(norm2(x)).
   End: features = norm(x)[:,0]; logits = heads.0(features).
   timesformer_b at 8 frames, 224, 400 classes: 121,566,352 parameters here (published: 121.4M).

3. XViT (Bulat et al. 2021, space-time mixing attention). Per-frame ViT: params
   patch_embed.proj, cls_token, pos_embed [1,S+1,D], temp_embed [1,T,1,D],
   blocks.{i}.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}, norm,
   temporal_head.cls_token [1,1,D], temporal_head.pos_embed [1,T+1,D],
   temporal_head.block.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2},
   temporal_head.norm, heads.0.
   Forward: x = cat(cls, patch_embed(frames)) + pos_embed -> (B*T, S+1, D);
   x = x.view(B,T,S+1,D) + temp_embed -> (B*T,S+1,D). Blocks as DeiT's, except inside
   attention, after computing q,k,v of shape (B*T, heads, S+1, dh): k and v are space-time
   mixed: view as (B, T, heads, S+1, dh); with f = dh // shift_div (--xvit-shift-div, default 4):
   channels [0,f) of each head's k and v at frame t come from frame t+1 (zero at the last
   frame), channels [f,2f) from frame t-1 (zero at the first frame), channels [2f,dh) stay
   (TSM's convention; applied to every token including the per-frame cls token); then attention
   per frame as usual with q unchanged. After the blocks: c = norm(x)[:,0] -> (B, T, D);
   temporal head: z = cat(temporal_head.cls_token.expand(B), c) + temporal_head.pos_embed;
   z = one pre-norm transformer block (temporal_head.block, same heads as the backbone);
   features = temporal_head.norm(z)[:,0]; logits = heads.0(features).

timm names (model_baseline.py timm): the same state dict with heads.0.* renamed head.* (one
head only); for DeiT that is exactly timm's VisionTransformer state dict.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

LN_EPS = 1e-6

# name -> (family, embed dim, heads, depth)
TRANSFORMER_PRESETS = {
    "deit_ti": ("deit", 192, 3, 12),
    "deit_s": ("deit", 384, 6, 12),
    "deit_b": ("deit", 768, 12, 12),
    "timesformer_s": ("timesformer", 384, 6, 12),
    "timesformer_b": ("timesformer", 768, 12, 12),
    "xvit_s": ("xvit", 384, 6, 12),
    "xvit_b": ("xvit", 768, 12, 12),
}
TRANSFORMER_FAMILIES = ("deit", "timesformer", "xvit")
FAMILY_DEFAULT = (384, 6, 18)  # a bare family: holo::ModelOptions' defaults (models/transformer.cc, depth 18)


def is_transformer(name):
    return name in TRANSFORMER_PRESETS or name in TRANSFORMER_FAMILIES


def trunc_normal(t, std=0.02):
    nn.init.trunc_normal_(t, std=std, a=-2.0, b=2.0)


def init_weights(m):
    """timm's _init_weights: Linear weights trunc_normal .02, biases 0; LayerNorm 1/0."""
    if isinstance(m, nn.Linear):
        trunc_normal(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def layer_norm(d):
    return nn.LayerNorm(d, eps=LN_EPS)


class Mlp(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


def attend(q, k, v):
    """softmax(q k^T * dh**-0.5) v on (B, h, N, dh), written out as timm's non-fused path."""
    a = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
    return a.softmax(-1) @ v


class Attention(nn.Module):
    """timm's Attention; with frames > 0 (XViT) k and v are space-time mixed across the frames."""

    def __init__(self, d, heads, frames=0, shift_div=4):
        super().__init__()
        if d % heads:
            raise ValueError(f"embed dim {d} is not a multiple of {heads} heads")
        self.heads, self.frames, self.shift_div = heads, frames, shift_div
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)

    def mix(self, t):
        """(B*T, h, N, dh): channels [0,f) from frame t+1, [f,2f) from t-1 (zeros at the ends)."""
        bt, h, n, dh = t.shape
        T = self.frames
        f = dh // self.shift_div
        if f == 0 or T < 1:
            return t
        t = t.reshape(bt // T, T, h, n, dh)
        z = t.new_zeros(bt // T, 1, h, n, f)
        fwd = torch.cat([t[:, 1:, ..., :f], z], 1)  # frame t <- t+1
        bwd = torch.cat([z, t[:, :-1, ..., f:2 * f]], 1)  # frame t <- t-1
        return torch.cat([fwd, bwd, t[..., 2 * f:]], -1).reshape(bt, h, n, dh)

    def forward(self, x):
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if self.frames:
            k, v = self.mix(k), self.mix(v)
        return self.proj(attend(q, k, v).transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    def __init__(self, d, heads, frames=0, shift_div=4):
        super().__init__()
        self.norm1 = layer_norm(d)
        self.attn = Attention(d, heads, frames, shift_div)
        self.norm2 = layer_norm(d)
        self.mlp = Mlp(d)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, d, patch):
        super().__init__()
        self.proj = nn.Conv2d(3, d, patch, stride=patch)

    def forward(self, frames):
        return self.proj(frames).flatten(2).transpose(1, 2)  # (N, S, D), patches row-major


class VideoTransformer(nn.Module):
    """Common parts: patch embedding, cls token, position embedding, input checks, heads."""

    def __init__(self, d, heads, image_size, patch, classes_per_head, frames):
        super().__init__()
        if image_size % patch:
            raise ValueError(f"image size {image_size} is not a multiple of the patch size {patch}")
        if d % heads:
            raise ValueError(f"embed dim {d} is not a multiple of {heads} heads")
        self.embed_dim, self.num_heads, self.image_size, self.patch_size = d, heads, image_size, patch
        self.frames = frames
        self.num_patches = (image_size // patch) ** 2
        self.patch_embed = PatchEmbed(d, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches + 1, d))

    def finish_init(self, classes_per_head):
        d = self.embed_dim
        self.heads = nn.ModuleList([nn.Linear(d, c) for c in classes_per_head])
        self.apply(init_weights)
        for name, p in self.named_parameters():
            if name.endswith(("cls_token", "pos_embed", "time_embed", "temp_embed")):
                trunc_normal(p)

    def check(self, x, need_frames):
        if x.dim() != 5 or x.shape[1] != 3:
            raise ValueError(f"{type(self).__name__}: expected clips N x 3 x T x H x W, got {tuple(x.shape)}")
        h, w = int(x.shape[3]), int(x.shape[4])
        if h != self.image_size or w != self.image_size:
            raise ValueError(f"{type(self).__name__}: input frames are {h} x {w}, the network is built for "
                             f"{self.image_size} x {self.image_size} (--image-size); no interpolation")
        if need_frames and int(x.shape[2]) != self.frames:
            raise ValueError(f"{type(self).__name__}: input has {int(x.shape[2])} frames, the network is built "
                             f"for {self.frames} (--frames); no interpolation of its time embedding")

    def embed(self, x):
        """(N, 3, T, H, W) -> cat(cls, patches) + pos_embed, (N*T, S+1, D), frames ordered (n t)."""
        n, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(n * t, c, h, w)
        p = self.patch_embed(frames)
        return torch.cat([self.cls_token.expand(p.shape[0], -1, -1), p], 1) + self.pos_embed


class DeiT(VideoTransformer):
    def __init__(self, d, heads, depth, image_size, patch, classes_per_head, frames=1):
        super().__init__(d, heads, image_size, patch, classes_per_head, frames)
        self.blocks = nn.ModuleList([Block(d, heads) for _ in range(depth)])
        self.norm = layer_norm(d)
        self.finish_init(classes_per_head)

    def features(self, x):
        self.check(x, need_frames=False)
        n, t = x.shape[0], x.shape[2]
        x = self.embed(x)
        for b in self.blocks:
            x = b(x)
        return self.norm(x)[:, 0].reshape(n, t, -1).mean(1)

    def forward(self, x):
        return self.heads[0](self.features(x))


class DividedBlock(nn.Module):
    """TimeSformer's Block with attention_type='divided_space_time'."""

    def __init__(self, d, heads):
        super().__init__()
        self.norm1 = layer_norm(d)
        self.attn = Attention(d, heads)
        self.temporal_norm1 = layer_norm(d)
        self.temporal_attn = Attention(d, heads)
        self.temporal_fc = nn.Linear(d, d)
        self.norm2 = layer_norm(d)
        self.mlp = Mlp(d)

    def forward(self, x, t):
        b, _, m = x.shape
        hw = (x.shape[1] - 1) // t
        # Temporal: 'b (h w t) m -> (b h w) t m' and back.
        xt = x[:, 1:]
        r = self.temporal_attn(self.temporal_norm1(xt.reshape(b * hw, t, m))).reshape(b, hw * t, m)
        xt = x[:, 1:] + self.temporal_fc(r)
        # Spatial: 'b (h w t) m -> (b t) (h w) m', one cls token per frame.
        init_cls = x[:, 0:1]
        cls_t = init_cls.repeat(1, t, 1).reshape(b * t, 1, m)
        xs = xt.reshape(b, hw, t, m).transpose(1, 2).reshape(b * t, hw, m)
        rs = self.attn(self.norm1(torch.cat([cls_t, xs], 1)))
        cls_out = rs[:, 0].reshape(b, t, m).mean(1, keepdim=True)
        rs = rs[:, 1:].reshape(b, t, hw, m).transpose(1, 2).reshape(b, hw * t, m)  # '(b t) (h w) m -> b (h w t) m'
        x = torch.cat([init_cls, xt], 1) + torch.cat([cls_out, rs], 1)
        return x + self.mlp(self.norm2(x))


class TimeSformer(VideoTransformer):
    def __init__(self, d, heads, depth, image_size, patch, classes_per_head, frames):
        super().__init__(d, heads, image_size, patch, classes_per_head, frames)
        self.time_embed = nn.Parameter(torch.zeros(1, frames, d))
        self.blocks = nn.ModuleList([DividedBlock(d, heads) for _ in range(depth)])
        self.norm = layer_norm(d)
        self.finish_init(classes_per_head)

    def features(self, x):
        self.check(x, need_frames=True)
        b, t = x.shape[0], x.shape[2]
        x = self.embed(x)  # (b t) (1+n) m
        cls = x[:b, 0:1]
        x = x[:, 1:]
        n, m = x.shape[1], x.shape[2]
        x = x.reshape(b, t, n, m).transpose(1, 2).reshape(b * n, t, m) + self.time_embed  # '(b t) n m -> (b n) t m'
        x = torch.cat([cls, x.reshape(b, n * t, m)], 1)  # '(b n) t m -> b (n t) m'
        for blk in self.blocks:
            x = blk(x, t)
        return self.norm(x)[:, 0]

    def forward(self, x):
        return self.heads[0](self.features(x))


class TemporalHead(nn.Module):
    def __init__(self, d, heads, frames):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, frames + 1, d))
        self.block = Block(d, heads)
        self.norm = layer_norm(d)

    def forward(self, c):
        z = torch.cat([self.cls_token.expand(c.shape[0], -1, -1), c], 1) + self.pos_embed
        return self.norm(self.block(z))[:, 0]


class XViT(VideoTransformer):
    def __init__(self, d, heads, depth, image_size, patch, classes_per_head, frames, shift_div=4):
        super().__init__(d, heads, image_size, patch, classes_per_head, frames)
        if shift_div < 2:
            raise ValueError(f"--xvit-shift-div {shift_div}: must be >= 2 (channels [0,f) and [f,2f) are shifted)")
        self.shift_div = shift_div
        self.temp_embed = nn.Parameter(torch.zeros(1, frames, 1, d))
        self.blocks = nn.ModuleList([Block(d, heads, frames, shift_div) for _ in range(depth)])
        self.norm = layer_norm(d)
        self.temporal_head = TemporalHead(d, heads, frames)
        self.finish_init(classes_per_head)

    def features(self, x):
        self.check(x, need_frames=True)
        b, t = x.shape[0], x.shape[2]
        x = self.embed(x)
        n1, d = x.shape[1], x.shape[2]
        x = (x.reshape(b, t, n1, d) + self.temp_embed).reshape(b * t, n1, d)
        for blk in self.blocks:
            x = blk(x)
        return self.temporal_head(self.norm(x)[:, 0].reshape(b, t, d))

    def forward(self, x):
        return self.heads[0](self.features(x))


def build_transformer(name, classes_per_head, frames=8, embed_dim=None, num_heads=None, depth=None,
                      patch_size=16, image_size=224, shift_div=4):
    if name in TRANSFORMER_PRESETS:
        family, d, h, dep = TRANSFORMER_PRESETS[name]
        if embed_dim and embed_dim != d:
            raise ValueError(f"--embed-dim {embed_dim}, but {name} has D = {d}")
        if num_heads and num_heads != h:
            raise ValueError(f"--num-heads {num_heads}, but {name} has {h} heads")
    elif name in TRANSFORMER_FAMILIES:
        family, (d, h, dep) = name, FAMILY_DEFAULT
        d = embed_dim or d
        h = num_heads or h
        dep = depth if depth is not None else dep
    else:
        raise ValueError(f"{name}: not a transformer network")
    image_size = image_size or 224
    patch_size = patch_size or 16
    if family == "deit":
        return DeiT(d, h, dep, image_size, patch_size, classes_per_head, frames)
    if family == "timesformer":
        return TimeSformer(d, h, dep, image_size, patch_size, classes_per_head, frames)
    return XViT(d, h, dep, image_size, patch_size, classes_per_head, frames, shift_div)


def timm_state_dict(model):
    """The model's state dict under timm's names: heads.0.* -> head.* (one head only)."""
    if len(model.heads) != 1:
        raise ValueError(f"timm names have one classifier (head); this network has {len(model.heads)} heads")
    out = {}
    for k, v in model.state_dict().items():
        out["head." + k[len("heads.0."):] if k.startswith("heads.0.") else k] = v
    return out
