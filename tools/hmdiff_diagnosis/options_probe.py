"""Probe of docs/hmdiff.md "Options from the diagnosis": dat_reverse with the default options, no DAT and the paper's literal (min_alpha_bar 0, dat_mode xt) on the default run's image.pt (8 test images, N 25, DDIM 40; coarse joints pelvis-aligned vs f(truth)).

Run from the pipeline root with PYTHONPATH=lib, OMP_NUM_THREADS=1; reads params from /tmp/hmdp.yaml. Throwaway, not tested."""
import torch, sys, time
torch.set_num_threads(1)
from humandiff.body.model import load_body_model
from humandiff.hmdiff.data import build_geometry, load_set
from humandiff.hmdiff.settings import read_params
from humandiff.hmdiff.training import load_hmdiff
from humandiff.hmdiff.dat import input_distribution, HMDiffOptions, dat_reverse
from humandiff.io.stage import stage_params
P="/tmp/hmdp.yaml"; p=read_params(P)
body_path=stage_params(P,"body",{"model_path":str})["model_path"]
geo=build_geometry(body_path,p.hierarchy,p.fit_poses,p.seed); bm=load_body_model(body_path)
test=load_set("data/images","data/extract","test",bm,geo,8)
model,_=load_hmdiff("data/hmdiff/models/image.pt",geo); model.eval(); model.requires_grad_(False)
f=geo.regressor; sched=model.config.noise_schedule()
tj=torch.einsum("jv,bvc->bjc",f,test.coarse); rel=lambda j:j-j[:,:1]
kw=model.conditioning(test.tokens,test.heatmaps,test.depth_maps)
for name,over in (("defaults (min_alpha_bar 1e-2, x0)",{}),("no DAT",{"dat":False}),("paper literal (0, xt)",{"min_alpha_bar":0.0,"dat_mode":"xt"})):
    g=torch.Generator().manual_seed(0); t0=time.time()
    U=input_distribution(test.heatmaps,test.depth_maps,test.intrinsics,test.root_depth,25,g,stride=test.stride)
    r=dat_reverse(model,sched,f,U,HMDiffOptions(**over),generator=g,model_kwargs=kw)
    c=r.center; pj=torch.einsum("jv,bvc->bjc",f,c)
    je=1000*(rel(pj)-rel(tj)).norm(dim=-1).mean().item(); ve=1000*(c-test.coarse).norm(dim=-1).mean().item()
    on=r.history["dat"].reshape(len(r.history["timestep"]),-1).mean(1)
    print(f"{name}: joint err {je:.0f} mm, vertex err {ve:.0f} mm, finite {torch.isfinite(r.samples).all().item()}, DAT-on fraction per step {[round(float(x),2) for x in on[::4]]}, {time.time()-t0:.0f}s", flush=True)
