"""Diagnosis of docs/hmdiff.md "Default-preset diagnosis (2026-12-06)": U against the truth, f's accuracy, the clean-estimate error and noise MSE per level (section 3, 4).

Run from the pipeline root with PYTHONPATH=lib, OMP_NUM_THREADS=1; reads params from /tmp/hmdp.yaml. Throwaway, not tested."""
import torch, numpy as np, sys
torch.set_num_threads(1)
from pathlib import Path
from humandiff.body.model import load_body_model
from humandiff.hmdiff.data import build_geometry, load_set
from humandiff.hmdiff.settings import read_params
from humandiff.hmdiff.training import load_hmdiff
from humandiff.hmdiff.dat import input_distribution, single_pose, pose_gap
from humandiff.diffusion import q_sample, x0_from_prediction
from humandiff.io.stage import stage_params
P="/tmp/hmdp.yaml"
p=read_params(P)
body_path=stage_params(P,"body",{"model_path":str})["model_path"]
geo=build_geometry(body_path,p.hierarchy,p.fit_poses,p.seed)
bm=load_body_model(body_path)
test=load_set("data/images","data/extract","test",bm,geo,8)
model,_=load_hmdiff("data/hmdiff/models/image.pt",geo); model.requires_grad_(False)
f=geo.regressor
print("coarse truth scale: std per coord", test.coarse.std((0,1)).tolist(), "abs max", test.coarse.abs().max().item())
tj=torch.einsum("jv,bvc->bjc",f,test.coarse)
print("f(true coarse) vs true joints mm:", 1000*(tj-test.joints[:, :tj.shape[1]]).norm(dim=-1).mean().item() if tj.shape[1]<=24 else None, "J=",tj.shape[1])
g=torch.Generator().manual_seed(0)
args=(test.heatmaps,test.depth_maps,test.intrinsics,test.root_depth)
U=input_distribution(*args,25,g,stride=test.stride)
uc=single_pose(*args,stride=test.stride)
e=(U-tj[:,None]).norm(dim=-1)*1000
print("U vs f(true) per-joint err mm: mean",e.mean().item(),"median",e.median().item())
print("U mean-pose vs f(true) mm", 1000*(U.mean(1)-tj).norm(dim=-1).mean().item(), " u_c:",1000*(uc[:,0]-tj).norm(dim=-1).mean().item())
print("U root joint mean abs (m)", U[:,:,0].abs().mean().item(), " f(true)[0] abs", tj[:,0].abs().mean().item())
print("per image U-mean err mm", (1000*(U.mean(1)-tj).norm(dim=-1).mean(-1)).round().tolist())
print("U spread (std over M) mm", 1000*U.std(1).norm(dim=-1).mean().item())
print("D at truth (sum over M,J) per image:", pose_gap(test.coarse, U, f).tolist())
print("J*M=",U.shape[1]*U.shape[2])
# x0_hat error at levels
sched=model.config.noise_schedule()
ab=sched.alphas_cumprod
for name,ds in (("test",test),):
    kw=model.conditioning(ds.tokens,ds.heatmaps,ds.depth_maps)
    for t in (0,5,20,50,100,150,199):
        errs=[]
        for rep in range(3):
            n=torch.randn(ds.coarse.shape,generator=g)
            tt=torch.full((len(ds),),t,dtype=torch.long)
            xt=q_sample(sched,ds.coarse,tt,n)
            out=model(xt,tt,**kw)
            x0=x0_from_prediction(sched,xt,tt,out,"eps")
            errs.append(((x0-ds.coarse).norm(dim=-1).mean().item(), ((out-n)**2).mean().item(), x0.abs().max().item()))
        e=np.array(errs).mean(0)
        print(f"{name} t={t:3d} ab={ab[t].item():.2e} 1/sqrt(ab)={1/ab[t].sqrt().item():7.1f} x0 err mm={1000*e[0]:9.1f} eps mse={e[1]:.4f} max|x0|={e[2]:.2f}")
