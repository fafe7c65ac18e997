"""The notebook's own code, as the benchmarks run it: the reference workloads that cnnviz
is measured against (its cnn_utils losses, its layer-by-layer forward, feature_inversion)."""
import torch


def alpha_norm(input_matrix, alpha):
    return ((input_matrix.view(-1)) ** alpha).sum()


def total_variation_norm(input_matrix, beta):
    to_check = input_matrix[..., :-1, :-1]
    one_bottom = input_matrix[..., 1:, :-1]
    one_right = input_matrix[..., :-1, 1:]
    return (((to_check - one_bottom) ** 2 + (to_check - one_right) ** 2) ** (beta / 2)).sum()


def euclidian_loss(org_matrix, target_matrix):
    return alpha_norm(target_matrix - org_matrix, 2) / alpha_norm(org_matrix, 2)


def get_layer_output(model, input_tensor, target_layer):
    x = input_tensor
    for i, layer in enumerate(model.features):
        x = layer(x)
        if i == target_layer:
            return x
    return x


def feature_inversion(model, input_tensor, target_layer, num_iterations, lr, noise):
    model.eval()
    with torch.no_grad():
        target_features = get_layer_output(model, input_tensor, target_layer)
    noise_image = noise.clone().requires_grad_(True)
    optimizer = torch.optim.SGD([noise_image], lr=lr, momentum=0.9)
    losses = []
    for _ in range(num_iterations):
        optimizer.zero_grad()
        current_features = get_layer_output(model, noise_image, target_layer)
        feature_loss = euclidian_loss(target_features, current_features)
        alpha_reg = 1e-7 * alpha_norm(noise_image, 6)
        tv_reg = 1e-8 * total_variation_norm(noise_image, 2)
        total_loss = feature_loss + alpha_reg + tv_reg
        total_loss.backward()
        optimizer.step()
        losses.append(total_loss.item())
    return noise_image.detach(), losses


def get_layer_outputs(model, input_tensor):
    outputs = []
    x = input_tensor
    for layer in model.features:
        x = layer(x)
        outputs.append(x.clone())
    return outputs
