"""Diagnosis of docs/hmdiff.md "Default-preset diagnosis (2026-12-06)": 2-minute training experiment: args VARIANT(default|diffonly|snrweight) STEPS (section 3).

Run from the pipeline root with PYTHONPATH=lib, OMP_NUM_THREADS=1; reads params from /tmp/hmdp.yaml. Throwaway, not tested."""
# short training experiment: default loss vs variants; evaluates eps/x0 error per t on test images and no-DAT DDIM-40 joint error
import torch, numpy as np, sys, time, math
torch.set_num_threads(1)
from humandiff.body.model import load_body_model
from humandiff.hmdiff.data import build_geometry, load_set
from humandiff.hmdiff.settings import read_params
from humandiff.hmdiff.training import load_hmdiff, HMDiffNet
from humandiff.hmdiff.losses import training_loss, LossWeights, geometry_losses, total
from humandiff.hmdiff.dat import pose_gap, HMDiffOptions, dat_reverse, input_distribution
from humandiff.diffusion import q_sample, x0_from_prediction, prediction_loss, TimestepSampler
from humandiff.io.stage import stage_params
variant=sys.argv[1]; steps=int(sys.argv[2])
P="/tmp/hmdp.yaml"; p=read_params(P)
body_path=stage_params(P,"body",{"model_path":str})["model_path"]
geo=build_geometry(body_path,p.hierarchy,p.fit_poses,p.seed)
bm=load_body_model(body_path)
train=load_set("data/images","data/extract","train",bm,geo,3000)
test=load_set("data/images","data/extract","test",bm,geo,8)
ref,_=load_hmdiff("data/hmdiff/models/image.pt",geo)
torch.manual_seed(0)
net=HMDiffNet(ref.config,geo)
sched=net.config.noise_schedule(); ab=sched.alphas_cumprod.float()
W=LossWeights(**{k:v for k,v in dict(p.weights.__dict__ if hasattr(p.weights,'__dict__') else p.weights).items() if k!='upsample'}) if False else None
from dataclasses import fields
print("LossWeights fields", [f.name for f in fields(LossWeights)])
Wd=LossWeights(diffusion=1.0,vertex=1.0,joint=1.0,normal=0.1,edge=20.0)
opt=torch.optim.Adam(net.parameters(),lr=1e-3)
g=torch.Generator().manual_seed(1)
t0=time.time()
for it in range(steps):
    lr=1e-3*min(1,(it+1)/20)*0.5*(1+math.cos(math.pi*it/steps))
    for pg in opt.param_groups: pg["lr"]=lr
    idx=torch.randint(0,len(train),(32,),generator=g)
    kw=net.conditioning(train.tokens[idx],train.heatmaps[idx],train.depth_maps[idx])
    mesh=train.coarse[idx]
    if variant=="default":
        per,terms=training_loss(net,mesh,sched,g,geo.faces,geo.regressor,Wd,model_kwargs=kw); loss=per.mean()
    else:
        t=torch.randint(0,200,(32,),generator=g); n=torch.randn(mesh.shape,generator=g)
        xt=q_sample(sched,mesh,t,n); out=net(xt,t,**kw)
        terms={"diffusion":prediction_loss(sched,out,mesh,n,t,"eps")}
        if variant=="snrweight":   # geometry terms weighted by alpha_bar_t (keeps high-noise x0 estimates from dominating)
            geo_terms=geometry_losses(x0_from_prediction(sched,xt,t,out,"eps"),mesh,geo.faces,geo.regressor)
            terms.update({k:v*ab[t] for k,v in geo_terms.items()})
        loss=total(terms,Wd).mean() if variant=="snrweight" else terms["diffusion"].mean()
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(net.parameters(),1.0); opt.step()
    if it%100==0 or it==steps-1: print(it, {k:round(float(v.mean()),4) for k,v in terms.items()}, f"{time.time()-t0:.0f}s", flush=True)
net.eval(); net.requires_grad_(False); torch.save(net.state_dict(), f"/tmp/hmdiag/net_{variant}_{steps}.pt")
def evalnet(model,tag):
    kw=model.conditioning(test.tokens,test.heatmaps,test.depth_maps); ge=torch.Generator().manual_seed(5); res=[]
    for t in (5,20,50,100,150):
        tt=torch.full((len(test),),t); n=torch.randn(test.coarse.shape,generator=ge)
        xt=q_sample(sched,test.coarse,tt,n); out=model(xt,tt,**kw); x0=x0_from_prediction(sched,xt,tt,out,"eps")
        res.append(f"t{t}:{1000*(x0-test.coarse).norm(dim=-1).mean().item():.0f}")
    opts=HMDiffOptions(dat=False,ddim_steps=40,num_samples=5)
    U=input_distribution(test.heatmaps,test.depth_maps,test.intrinsics,test.root_depth,5,ge,stride=test.stride)
    r=dat_reverse(model,sched,geo.regressor,U,opts,generator=ge,model_kwargs=kw)
    tj=torch.einsum("jv,bvc->bjc",geo.regressor,test.coarse); pj=torch.einsum("jv,bvc->bjc",geo.regressor,r.center)
    rel=lambda j:j-j[:,:1]
    print(tag,"x0 err mm at t:"," ".join(res)," | noDAT DDIM40 coarse-joint err (pelvis-aligned) mm:",round(1000*(rel(pj)-rel(tj)).norm(dim=-1).mean().item()), "vertex err mm", round(1000*(r.center-test.coarse).norm(dim=-1).mean().item()), flush=True)
evalnet(net,variant)
if variant=="default":
    ref.eval(); ref.requires_grad_(False); evalnet(ref,"stage-trained image.pt")
mt=train.coarse.mean(0,keepdim=True)
tj=torch.einsum("jv,bvc->bjc",geo.regressor,test.coarse); mj=torch.einsum("jv,bvc->bjc",geo.regressor,mt.expand_as(test.coarse))
rel=lambda j:j-j[:,:1]
print("mean-train-mesh baseline: coarse-joint err mm", round(1000*(rel(mj)-rel(tj)).norm(dim=-1).mean().item()), "vertex err mm", round(1000*(mt-test.coarse).norm(dim=-1).mean().item()))
