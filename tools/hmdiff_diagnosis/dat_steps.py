"""Diagnosis of docs/hmdiff.md "Default-preset diagnosis (2026-12-06)": per-step D_k, R_k, shift norm, |dD/dx0|, |dD/dx_t|/|dD/dx0| for 2 images: args GAMMA [STATE_DICT] (section 1).

Run from the pipeline root with PYTHONPATH=lib, OMP_NUM_THREADS=1; reads params from /tmp/hmdp.yaml. Throwaway, not tested."""
import torch, numpy as np, sys
torch.set_num_threads(1)
from humandiff.body.model import load_body_model
from humandiff.hmdiff.data import build_geometry, load_set
from humandiff.hmdiff.settings import read_params
from humandiff.hmdiff.training import load_hmdiff
from humandiff.hmdiff.dat import input_distribution, pose_gap, ActivationState, dat_guidance, update_activation, HMDiffOptions
from humandiff.diffusion import ddim_step, resolve_timesteps, CLEAN
from humandiff.io.stage import stage_params
P="/tmp/hmdp.yaml"
p=read_params(P)
body_path=stage_params(P,"body",{"model_path":str})["model_path"]
geo=build_geometry(body_path,p.hierarchy,p.fit_poses,p.seed)
bm=load_body_model(body_path)
test=load_set("data/images","data/extract","test",bm,geo,2)
model,_=load_hmdiff("data/hmdiff/models/image.pt",geo)
if len(sys.argv)>2: model.load_state_dict(torch.load(sys.argv[2]))
model.eval(); model.requires_grad_(False)
f=geo.regressor; sched=model.config.noise_schedule(); ab=sched.alphas_cumprod
gamma=float(sys.argv[1]); N=25
g=torch.Generator().manual_seed(0)
args=(test.heatmaps,test.depth_maps,test.intrinsics,test.root_depth)
U=input_distribution(*args,N,g,stride=test.stride)
cp=U.repeat_interleave(N,0)
kw={k:(v.repeat_interleave(N,0) if v is not None else None) for k,v in model.conditioning(test.tokens,*args[:2]).items()}
opt=HMDiffOptions(gamma=gamma, dat_mode="xt", min_alpha_bar=0.0)  # the paper's x_t step (the diagnosis)
levels=resolve_timesteps(sched,40,spacing="trailing").tolist()+[CLEAN]
x=torch.randn((2*N,geo.coarse_vertices,3),generator=g)
st=ActivationState.start(2*N,True)
tj=torch.einsum("jv,bvc->bjc",f,test.coarse).repeat_interleave(N,0)
for lv,nl in zip(levels[:-1],levels[1:]):
    gd=dat_guidance(cp,f,st,opt) if bool(st.active.any()) else None
    out=ddim_step(model,x,lv,nl,sched,prediction="eps",guidance=gd,model_kwargs=kw)
    ref=ddim_step(model,x,lv,nl,sched,prediction="eps",model_kwargs=kw)
    gap=out.guidance_loss if gd is not None else pose_gap(out.x0_hat,cp,f)
    st,gate,ratio=update_activation(st,gap,opt.threshold,True)
    shift=(out.x-ref.x).flatten(1).norm(dim=1)
    j0=torch.einsum("jv,bvc->bjc",f,out.x0_hat); gx0=(2*torch.einsum("jv,rjc->rvc",f,(j0[:,None]-cp).sum(1))).flatten(1).norm(dim=1)
    amp=(shift/max(gamma,1e-30)/gx0).median().item()
    jerr=1000*(torch.einsum("jv,bvc->bjc",f,out.x0_hat)-tj).norm(dim=-1).mean()
    print(f"t={lv:3d} 1/sqrt(ab)={1/ab[lv].sqrt().item():6.1f} D_k med={gap.median().item():10.3g} R_k med={ratio.median().item():8.3g} on={int(gate.sum()):2d}/{2*N} |shift| med={shift.median().item():9.3g} |x_t| rms={x.pow(2).mean().sqrt().item():9.3g} |x0hat| rms={out.x0_hat.pow(2).mean().sqrt().item():9.3g} jerr={jerr.item():9.1f} |dD/dx0|={gx0.median().item():8.3g} |dD/dxt|/|dD/dx0|={amp:8.3g}", flush=True)
    x=out.x
    if not torch.isfinite(x).all(): print("non-finite"); break
