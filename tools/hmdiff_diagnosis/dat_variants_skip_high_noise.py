"""Diagnosis of docs/hmdiff.md "Default-preset diagnosis (2026-12-06)": DAT only at levels with alpha_bar >= 1e-2 (section 2).

Run from the pipeline root with PYTHONPATH=lib, OMP_NUM_THREADS=1; reads params from /tmp/hmdp.yaml. Throwaway, not tested."""
import torch, numpy as np, sys
torch.set_num_threads(1)
from humandiff.body.model import load_body_model
from humandiff.hmdiff.data import build_geometry, load_set
from humandiff.hmdiff.settings import read_params
from humandiff.hmdiff.training import load_hmdiff
from humandiff.hmdiff.dat import input_distribution, pose_gap, ActivationState, update_activation, activation_gate
from humandiff.diffusion import ddim_step, resolve_timesteps, CLEAN, Guidance
from humandiff.io.stage import stage_params
P="/tmp/hmdp.yaml"; p=read_params(P)
body_path=stage_params(P,"body",{"model_path":str})["model_path"]
geo=build_geometry(body_path,p.hierarchy,p.fit_poses,p.seed); bm=load_body_model(body_path)
test=load_set("data/images","data/extract","test",bm,geo,8)
model,_=load_hmdiff("data/hmdiff/models/image.pt",geo)
if len(sys.argv)>1 and sys.argv[1]!="-": model.load_state_dict(torch.load(sys.argv[1]))
model.eval(); model.requires_grad_(False)
f=geo.regressor; sched=model.config.noise_schedule(); ab=sched.alphas_cumprod.float()
N=25; B=len(test)
tj=torch.einsum("jv,bvc->bjc",f,test.coarse); rel=lambda j:j-j[:,:1]
def run(mode,norm,scaling,gamma,act=True,abmin=1e-2):
    g=torch.Generator().manual_seed(0)
    U=input_distribution(test.heatmaps,test.depth_maps,test.intrinsics,test.root_depth,N,g,stride=test.stride)
    cp=U.repeat_interleave(N,0)
    kw={k:(v.repeat_interleave(N,0) if v is not None else None) for k,v in model.conditioning(test.tokens,test.heatmaps,test.depth_maps).items()}
    levels=resolve_timesteps(sched,40,spacing="trailing").tolist()+[CLEAN]
    x=torch.randn((B*N,geo.coarse_vertices,3),generator=g); st=ActivationState.start(B*N,gamma>0); offstep=[]
    for lv,nl in zip(levels[:-1],levels[1:]):
        def loss(x0,t,st=st):
            gap=pose_gap(x0,cp,f)/(cp.shape[1] if norm=="meanM" else 1)
            gate,_=activation_gate(st,gap,0.05,act); return torch.where(gate,gap,gap.detach())
        sc=gamma*(ab[lv].sqrt().item() if scaling=="sqrtab" else 1.0)
        usable=ab[lv].item()>=abmin
        gd=Guidance(loss=loss,scale=sc,mode=mode) if (gamma>0 and usable and bool(st.active.any())) else None
        out=ddim_step(model,x,lv,nl,sched,prediction="eps",guidance=gd,model_kwargs=kw)
        gap=out.guidance_loss if gd is not None else pose_gap(out.x0_hat,cp,f)/(cp.shape[1] if norm=="meanM" else 1)
        if usable: st,gate,ratio=update_activation(st,gap,0.05,act)
        else: gate=torch.zeros(B*N,dtype=torch.bool)
        offstep.append(int(gate.sum()))
        x=out.x
    ok=torch.isfinite(x).flatten(1).all(1).float().mean().item()
    c=x.reshape(B,N,-1,3).mean(1)
    pj=torch.einsum("jv,bvc->bjc",f,c)
    je=1000*(rel(pj)-rel(tj)).norm(dim=-1).mean().item(); ve=1000*(c-test.coarse).norm(dim=-1).mean().item()
    print(f"mode={mode} gap={norm} scale={scaling} gamma={gamma:g} finite={ok:.2f} joint err mm={je:.0f} vertex err mm={ve:.0f} chains on per step={offstep[:40:2]}...", flush=True)
print("DAT (and D_K) only where alpha_bar_t >= 1e-2:")
for mode,norm,scaling,gm in (("xt","sum","none",0.2),("xt","sum","none",0.02),("xt","sum","none",0.002),("x0","sum","none",0.2)):
    run(mode,norm,scaling,gm)
