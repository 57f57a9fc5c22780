"""Diagnosis of docs/hmdiff.md "Default-preset diagnosis (2026-12-06)": constant-mesh, regression-head and up-sampled-truth rows; U/u_c per-axis errors (sections 3, 4).

Run from the pipeline root with PYTHONPATH=lib, OMP_NUM_THREADS=1; reads params from /tmp/hmdp.yaml. Throwaway, not tested."""
import torch, numpy as np
torch.set_num_threads(1)
from humandiff.body.model import load_body_model, load_body_arrays
from humandiff.hmdiff.data import build_geometry, load_set
from humandiff.hmdiff.settings import read_params
from humandiff.hmdiff.training import load_hmdiff
from humandiff.hmdiff.dat import input_distribution, single_pose
from humandiff.hmdiff.run import score, predict_head
from humandiff.io.stage import stage_params
P="/tmp/hmdp.yaml"; p=read_params(P)
body_path=stage_params(P,"body",{"model_path":str})["model_path"]
geo=build_geometry(body_path,p.hierarchy,p.fit_poses,p.seed); bm=load_body_model(body_path)
test=load_set("data/images","data/extract","test",bm,geo,16)
train=load_set("data/images","data/extract","train",bm,geo,2000)
model,_=load_hmdiff("data/hmdiff/models/image.pt",geo)
J=torch.as_tensor(load_body_arrays(body_path)["J_regressor"],dtype=torch.float32)
m=lambda d:{k:round(float(v.mean()),1) for k,v in d.items()}
with torch.no_grad():
    print("truth coarse -> learned upsampler, scored:", m(score(model.upsampler(test.coarse)[1],test,J)))
    mt=train.coarse.mean(0,keepdim=True).expand_as(test.coarse)
    print("mean train coarse mesh, scored:", m(score(model.upsampler(mt)[1],test,J)))
    print("regression head (perception SMPL head), scored:", m(score(predict_head(bm,test).vertices,test,J)))
f=geo.regressor; tj=torch.einsum("jv,bvc->bjc",f,test.coarse)
g=torch.Generator().manual_seed(0)
U=input_distribution(test.heatmaps,test.depth_maps,test.intrinsics,test.root_depth,25,g,stride=test.stride)
rel=lambda j:j-j[...,:1,:]
print("U root-aligned err mm", round(1000*(rel(U)-rel(tj)[:,None]).norm(dim=-1).mean().item()), " U mean bias per axis mm", (1000*(U-tj[:,None]).mean((0,1,2))).round().tolist())
print("U per-axis abs err mm", (1000*(U-tj[:,None]).abs().mean((0,1,2))).round().tolist())
uc=single_pose(test.heatmaps,test.depth_maps,test.intrinsics,test.root_depth,stride=test.stride)[:,0]
print("u_c per-axis abs err mm", (1000*(uc-tj).abs().mean((0,1))).round().tolist(), "PA-free mean err", round(1000*(uc-tj).norm(dim=-1).mean().item()))
# head joints vs truth via f on coarse down of head mesh
hv=predict_head(bm,test).vertices
hj=torch.einsum("jv,bvc->bjc",f,torch.as_tensor(geo.hierarchy.down(hv.double()),dtype=torch.float32))
print("head coarse-joints vs f(true) per-axis abs err mm", (1000*(hj-tj).abs().mean((0,1))).round().tolist())
