"""Analyses: layer information (challenge 3), deletion/insertion curves, the randomization
sanity check and the adversarial report (challenge 4), as figures and one HTML page.

``run(model, x, out_dir, iterations=...)`` takes the model and a batch of normalized photos
(the first is the main one) and writes under out_dir:
  20_layer_information.png    SSIM/PSNR of each layer's inversion vs depth, bottleneck marked
  21_deletion_insertion.png   Grad-CAM against a random map of the CAM's resolution
  22_sanity_check.png         saliency's correlation as MobileNetV2 is randomized from the top
  23_adversarial_report.png   PGD example, predictions, saliency before/after, layer divergence
  analysis_layer_information.html, analysis_deletion_insertion.html,
  analysis_sanity_check.html, analysis_adversarial_report.html   a page per analysis
  analysis_faithfulness.html  the four figures with their numbers

Standalone: python examples/demo_analysis_faithfulness.py [--out out] [--image PATH]
"""
import argparse
import html
import os
import time

import matplotlib

matplotlib.use("Agg")
import torch  # noqa: E402

import cnnviz  # noqa: E402
import cnnviz.plot  # noqa: E402
from _analysis_pages import write_pages  # noqa: E402


def _save(fig, out_dir, name):
    path = os.path.join(out_dir, name)
    fig.savefig(path, dpi=110)
    print(f"  wrote {path}")
    return name


def run(model, x, out_dir, iterations=30, labels="imagenet"):
    names = cnnviz.zoo.labels_for(labels)
    sections = []
    x0 = x[:1]

    t = time.perf_counter()
    layers = ["features.1", "features.3", "features.7", "features.14"]
    info = cnnviz.layer_information(model, x0, layers, iterations=iterations, optimizer="adam", learning_rate=0.05)
    print(f"  layer information ({iterations} Adam steps per layer, {time.perf_counter() - t:.0f} s): {info!r}")
    fig = _save(cnnviz.plot.show_layer_information(info, x0), out_dir, "20_layer_information.png")
    rows = "".join(f"<tr><td>{n}</td><td>{int(c)}x{int(h)}x{int(w)}</td><td>{float(s):.3f}</td>"
                   f"<td>{float(p):.1f}</td></tr>"
                   for n, c, h, w, s, p in zip(info.layers, info.channels, info.height, info.width,
                                               info.ssim[:, 0], info.psnr[:, 0]))
    sections.append(("layer_information", "Layer information (challenge 3)", fig,
                     f"<table><tr><th>layer</th><th>C x h x w</th><th>SSIM</th><th>PSNR dB</th></tr>{rows}</table>"
                     f"<p>Bottleneck: <b>{html.escape(info.bottleneck_layer)}</b> (SSIM falls by "
                     f"{float(info.ssim_drop[info.bottleneck]):.3f}).</p>"))

    t = time.perf_counter()
    cam = cnnviz.grad_cam(model, x, "features.18")
    torch.manual_seed(0)
    random = torch.rand(x.shape[0], *cam.map.shape[1:])  # the CAM's granularity: a fair control
    steps = 10
    r_cam = cnnviz.deletion_insertion(model, x, cam, steps=steps)
    r_rnd = cnnviz.deletion_insertion(model, x, random, target=cam.target, steps=steps)
    print(f"  deletion/insertion ({time.perf_counter() - t:.0f} s): Grad-CAM {r_cam!r}; random {r_rnd!r}")
    fig = _save(cnnviz.plot.show_deletion_insertion({"Grad-CAM": r_cam, "random 7x7": r_rnd},
                                                    title=f"{x.shape[0]} photos, MobileNetV2"),
                out_dir, "21_deletion_insertion.png")
    sections.append(("deletion_insertion", "Deletion and insertion (Petsiuk et al. 2018)", fig,
                     f"<p>Mean deletion AUC: Grad-CAM {float(r_cam.deletion_auc.mean()):.3f}, random "
                     f"{float(r_rnd.deletion_auc.mean()):.3f} (lower is better). Mean insertion AUC: Grad-CAM "
                     f"{float(r_cam.insertion_auc.mean()):.3f}, random {float(r_rnd.insertion_auc.mean()):.3f} "
                     "(higher is better).</p>"))

    t = time.perf_counter()
    sc = cnnviz.sanity_check("saliency", model, x0, group_depth=2)
    print(f"  sanity check ({time.perf_counter() - t:.0f} s): {sc!r}")
    fig = _save(cnnviz.plot.show_sanity_check(sc, x0), out_dir, "22_sanity_check.png")
    rho = sc.rank_correlation[:, 0]
    sections.append(("sanity_check", "Sanity check: model-parameter randomization (Adebayo et al. 2018)", fig,
                     f"<p>Saliency's rank correlation with the trained model's map: {float(rho[0]):.2f} after "
                     f"randomizing {html.escape(sc.steps[0])}, {float(rho[-1]):.2f} with every layer "
                     "randomized. The model itself is untouched (a deep copy is randomized).</p>"))

    t = time.perf_counter()
    rep = cnnviz.adversarial_report(model, x0, eps=2 / 255, steps=10)
    print(f"  adversarial report ({time.perf_counter() - t:.0f} s): {rep!r}")
    fig = _save(cnnviz.plot.show_adversarial_report(rep, x0, labels=labels), out_dir, "23_adversarial_report.png")
    before, after = int(rep.attack.prediction_before[0]), int(rep.attack.prediction_after[0])
    sections.append(("adversarial_report", "Adversarial report (challenge 4)", fig,
                     f"<p>PGD, 10 steps within 2/255: {html.escape(names[before] if names else str(before))} &rarr; "
                     f"{html.escape(names[after] if names else str(after))}; saliency rank correlation "
                     f"{float(rep.saliency_correlation[0]):.2f}; most affected layer "
                     f"{html.escape(str(rep.most_affected_layer))}.</p>"))

    write_pages(out_dir, "analysis_faithfulness.html", "cnnviz analyses", sections)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="out")
    ap.add_argument("--image", default=None, help="photo (default: cat_chelsea.png from the sample data)")
    ap.add_argument("--iterations", type=int, default=30, help="inversion steps per layer")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(os.cpu_count() or 1)
    model = cnnviz.zoo.pretrained("mobilenet_v2")
    data = cnnviz.data_dir()
    paths = [args.image or os.path.join(data, "images", "cat_chelsea.png"),
             os.path.join(data, "images", "dog.jpg"), os.path.join(data, "images", "macaws.png")]
    x = torch.cat([cnnviz.preprocess(cnnviz.load_image(p), size=224, resize=256) for p in paths])
    run(model, x, args.out, iterations=args.iterations)


if __name__ == "__main__":
    main()
