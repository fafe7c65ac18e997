"""The notebook's original helper module ``cnn_utils``, as the notebook was written with it
(the inverted-representation helpers: misc_functions' ``preprocess_image`` and
``recreate_image``, and the loss helpers). The tests compare ``cnnviz.cnn_utils`` with this
code. Only ``Image.ANTIALIAS`` is spelled ``Image.LANCZOS`` (the same filter; Pillow 10
dropped the old name)."""
import copy

import numpy as np
import torch
from PIL import Image
from torch.autograd import Variable


def preprocess_image(pil_im, resize_im=True):
    mean = [0.485, 0.456, 0.406]
    std = [0.229, 0.224, 0.225]
    # ensure or transform incoming image to PIL image
    if type(pil_im) != Image.Image:
        try:
            pil_im = Image.fromarray(pil_im)
        except Exception:
            print("could not transform PIL_image to a PIL.Image object. Please check input.")
    # Resize image
    if resize_im:
        pil_im = pil_im.resize((224, 224), Image.LANCZOS)
    im_as_arr = np.float32(pil_im)
    im_as_arr = im_as_arr.transpose(2, 0, 1)  # Convert array to D,W,H
    # Normalize the channels
    for channel, _ in enumerate(im_as_arr):
        im_as_arr[channel] /= 255
        im_as_arr[channel] -= mean[channel]
        im_as_arr[channel] /= std[channel]
    # Convert to float tensor
    im_as_ten = torch.from_numpy(im_as_arr).float()
    # Add one more channel to the beginning. Tensor shape = 1,3,224,224
    im_as_ten.unsqueeze_(0)
    # Convert to Pytorch variable
    im_as_var = Variable(im_as_ten, requires_grad=True)
    return im_as_var


def recreate_image(im_as_var):
    reverse_mean = [-0.485, -0.456, -0.406]
    reverse_std = [1 / 0.229, 1 / 0.224, 1 / 0.225]
    recreated_im = copy.copy(im_as_var.data.numpy()[0])
    for c in range(3):
        recreated_im[c] /= reverse_std[c]
        recreated_im[c] -= reverse_mean[c]
    recreated_im[recreated_im > 1] = 1
    recreated_im[recreated_im < 0] = 0
    recreated_im = np.round(recreated_im * 255)

    recreated_im = np.uint8(recreated_im).transpose(1, 2, 0)
    return recreated_im


def alpha_norm(input_matrix, alpha):
    alpha_norm = ((input_matrix.view(-1)) ** alpha).sum()
    return alpha_norm


def total_variation_norm(input_matrix, beta):
    to_check = input_matrix[:, :-1, :-1]  # Trimmed: right - bottom
    one_bottom = input_matrix[:, 1:, :-1]  # Trimmed: top - right
    one_right = input_matrix[:, :-1, 1:]  # Trimmed: top - right
    total_variation = (((to_check - one_bottom) ** 2 + (to_check - one_right) ** 2) ** (beta / 2)).sum()
    return total_variation


def euclidian_loss(org_matrix, target_matrix):
    distance_matrix = target_matrix - org_matrix
    euclidian_distance = alpha_norm(distance_matrix, 2)
    normalized_euclidian_distance = euclidian_distance / alpha_norm(org_matrix, 2)
    return normalized_euclidian_distance
