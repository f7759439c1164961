"""The subset of Caffe's ``caffe.proto`` that caffevis reads, built at import time.

Only the messages and fields needed to read deploy prototxts and caffemodels are
declared; field numbers follow Caffe's schema so binary caffemodels decode. Unknown
fields in text prototxts are skipped (training-only settings such as fillers).
No ``protoc`` is needed: the descriptor is assembled from the table below.
"""
from google.protobuf import descriptor_pb2, descriptor_pool

try:  # protobuf >= 4.21
    from google.protobuf.message_factory import GetMessageClass as _get_class
except ImportError:  # pragma: no cover - older protobuf
    from google.protobuf.message_factory import MessageFactory

    def _get_class(desc):
        return MessageFactory().GetPrototype(desc)

_F = descriptor_pb2.FieldDescriptorProto
_OPT, _REP = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
_SCALAR = {
    "float": _F.TYPE_FLOAT, "double": _F.TYPE_DOUBLE, "int32": _F.TYPE_INT32,
    "int64": _F.TYPE_INT64, "uint32": _F.TYPE_UINT32, "bool": _F.TYPE_BOOL,
    "string": _F.TYPE_STRING, "bytes": _F.TYPE_BYTES,
}

ENUMS = {
    "Phase": [("TRAIN", 0), ("TEST", 1)],
    "PoolMethod": [("MAX", 0), ("AVE", 1), ("STOCHASTIC", 2)],
    "RoundMode": [("CEIL", 0), ("FLOOR", 1)],
    "NormRegion": [("ACROSS_CHANNELS", 0), ("WITHIN_CHANNEL", 1)],
    "EltwiseOp": [("PROD", 0), ("SUM", 1), ("MAX", 2)],
    "Engine": [("DEFAULT", 0), ("CAFFE", 1), ("CUDNN", 2)],
    "DimCheckMode": [("STRICT", 0), ("PERMISSIVE", 1)],
    "V1LayerType": [
        ("NONE", 0), ("ABSVAL", 35), ("ACCURACY", 1), ("ARGMAX", 30), ("BNLL", 2),
        ("CONCAT", 3), ("CONTRASTIVE_LOSS", 37), ("CONVOLUTION", 4), ("DATA", 5),
        ("DECONVOLUTION", 39), ("DROPOUT", 6), ("DUMMY_DATA", 32),
        ("EUCLIDEAN_LOSS", 7), ("ELTWISE", 25), ("EXP", 38), ("FLATTEN", 8),
        ("HDF5_DATA", 9), ("HDF5_OUTPUT", 10), ("HINGE_LOSS", 28), ("IM2COL", 11),
        ("IMAGE_DATA", 12), ("INFOGAIN_LOSS", 13), ("INNER_PRODUCT", 14), ("LRN", 15),
        ("MEMORY_DATA", 29), ("MULTINOMIAL_LOGISTIC_LOSS", 16), ("MVN", 34),
        ("POOLING", 17), ("POWER", 26), ("RELU", 18), ("SIGMOID", 19),
        ("SIGMOID_CROSS_ENTROPY_LOSS", 27), ("SILENCE", 36), ("SOFTMAX", 20),
        ("SOFTMAX_LOSS", 21), ("SPLIT", 22), ("SLICE", 33), ("TANH", 23),
        ("WINDOW_DATA", 24), ("THRESHOLD", 31),
    ],
}

# message -> [(field, number, label, type, default)]; type is a scalar name,
# a message name, or "enum:Name".
O, R = _OPT, _REP
MESSAGES = {
    "BlobShape": [("dim", 1, R, "int64", None)],
    "BlobProto": [
        ("shape", 7, O, "BlobShape", None), ("data", 5, R, "float", None),
        ("diff", 6, R, "float", None), ("double_data", 8, R, "double", None),
        ("double_diff", 9, R, "double", None), ("num", 1, O, "int32", "0"),
        ("channels", 2, O, "int32", "0"), ("height", 3, O, "int32", "0"),
        ("width", 4, O, "int32", "0"),
    ],
    "BlobProtoVector": [("blobs", 1, R, "BlobProto", None)],
    "NetState": [("phase", 1, O, "enum:Phase", "TEST"), ("level", 2, O, "int32", "0"),
                 ("stage", 3, R, "string", None)],
    "NetStateRule": [("phase", 1, O, "enum:Phase", None), ("min_level", 2, O, "int32", None),
                     ("max_level", 3, O, "int32", None), ("stage", 4, R, "string", None),
                     ("not_stage", 5, R, "string", None)],
    "ParamSpec": [("name", 1, O, "string", None), ("lr_mult", 3, O, "float", "1"),
                  ("decay_mult", 4, O, "float", "1")],
    "NetParameter": [
        ("name", 1, O, "string", None), ("input", 3, R, "string", None),
        ("input_shape", 8, R, "BlobShape", None), ("input_dim", 4, R, "int32", None),
        ("force_backward", 5, O, "bool", "false"), ("state", 6, O, "NetState", None),
        ("layer", 100, R, "LayerParameter", None), ("layers", 2, R, "V1LayerParameter", None),
    ],
    "ConvolutionParameter": [
        ("num_output", 1, O, "uint32", None), ("bias_term", 2, O, "bool", "true"),
        ("pad", 3, R, "uint32", None), ("kernel_size", 4, R, "uint32", None),
        ("stride", 6, R, "uint32", None), ("dilation", 18, R, "uint32", None),
        ("pad_h", 9, O, "uint32", "0"), ("pad_w", 10, O, "uint32", "0"),
        ("kernel_h", 11, O, "uint32", None), ("kernel_w", 12, O, "uint32", None),
        ("stride_h", 13, O, "uint32", None), ("stride_w", 14, O, "uint32", None),
        ("group", 5, O, "uint32", "1"), ("engine", 15, O, "enum:Engine", "DEFAULT"),
        ("axis", 16, O, "int32", "1"), ("force_nd_im2col", 17, O, "bool", "false"),
    ],
    "PoolingParameter": [
        ("pool", 1, O, "enum:PoolMethod", "MAX"), ("pad", 4, O, "uint32", "0"),
        ("pad_h", 9, O, "uint32", "0"), ("pad_w", 10, O, "uint32", "0"),
        ("kernel_size", 2, O, "uint32", None), ("kernel_h", 5, O, "uint32", None),
        ("kernel_w", 6, O, "uint32", None), ("stride", 3, O, "uint32", "1"),
        ("stride_h", 7, O, "uint32", None), ("stride_w", 8, O, "uint32", None),
        ("engine", 11, O, "enum:Engine", "DEFAULT"), ("global_pooling", 12, O, "bool", "false"),
        ("round_mode", 13, O, "enum:RoundMode", "CEIL"),
    ],
    "LRNParameter": [
        ("local_size", 1, O, "uint32", "5"), ("alpha", 2, O, "float", "1"),
        ("beta", 3, O, "float", "0.75"), ("norm_region", 4, O, "enum:NormRegion", "ACROSS_CHANNELS"),
        ("k", 5, O, "float", "1"), ("engine", 6, O, "enum:Engine", "DEFAULT"),
        ("deconv_ignore", 7, O, "bool", "false"),
    ],
    "InnerProductParameter": [
        ("num_output", 1, O, "uint32", None), ("bias_term", 2, O, "bool", "true"),
        ("axis", 5, O, "int32", "1"), ("transpose", 6, O, "bool", "false"),
    ],
    "ReLUParameter": [("negative_slope", 1, O, "float", "0"), ("engine", 2, O, "enum:Engine", "DEFAULT")],
    "PReLUParameter": [("channel_shared", 2, O, "bool", "false")],
    "ELUParameter": [("alpha", 1, O, "float", "1")],
    "PowerParameter": [("power", 1, O, "float", "1"), ("scale", 2, O, "float", "1"),
                       ("shift", 3, O, "float", "0")],
    "SoftmaxParameter": [("engine", 1, O, "enum:Engine", "DEFAULT"), ("axis", 2, O, "int32", "1")],
    "ConcatParameter": [("axis", 2, O, "int32", "1"), ("concat_dim", 1, O, "uint32", "1")],
    "EltwiseParameter": [("operation", 1, O, "enum:EltwiseOp", "SUM"), ("coeff", 2, R, "float", None),
                         ("stable_prod_grad", 3, O, "bool", "true")],
    "FlattenParameter": [("axis", 1, O, "int32", "1"), ("end_axis", 2, O, "int32", "-1")],
    "ReshapeParameter": [("shape", 1, O, "BlobShape", None), ("axis", 2, O, "int32", "0"),
                         ("num_axes", 3, O, "int32", "-1")],
    "DropoutParameter": [("dropout_ratio", 1, O, "float", "0.5")],
    "BatchNormParameter": [("use_global_stats", 1, O, "bool", None),
                           ("moving_average_fraction", 2, O, "float", "0.999"),
                           ("eps", 3, O, "float", "1e-5")],
    "ScaleParameter": [("axis", 1, O, "int32", "1"), ("num_axes", 2, O, "int32", "1"),
                       ("bias_term", 4, O, "bool", "false")],
    "InputParameter": [("shape", 1, R, "BlobShape", None)],
    "SliceParameter": [("axis", 3, O, "int32", "1"), ("slice_point", 2, R, "uint32", None),
                       ("slice_dim", 1, O, "uint32", "1")],
    "CropParameter": [("axis", 1, O, "int32", "2"), ("offset", 2, R, "uint32", None)],
    "BiasParameter": [("axis", 1, O, "int32", "1"), ("num_axes", 2, O, "int32", "1")],
    "ExpParameter": [("base", 1, O, "float", "-1"), ("scale", 2, O, "float", "1"), ("shift", 3, O, "float", "0")],
    "LogParameter": [("base", 1, O, "float", "-1"), ("scale", 2, O, "float", "1"), ("shift", 3, O, "float", "0")],
    "SigmoidParameter": [("engine", 1, O, "enum:Engine", "DEFAULT")],
    "TanHParameter": [("engine", 1, O, "enum:Engine", "DEFAULT")],
    "TransformationParameter": [("scale", 1, O, "float", "1"), ("mirror", 2, O, "bool", "false"),
                                ("crop_size", 3, O, "uint32", "0"), ("mean_file", 4, O, "string", None),
                                ("mean_value", 5, R, "float", None)],
    "LayerParameter": [
        ("name", 1, O, "string", None), ("type", 2, O, "string", None),
        ("bottom", 3, R, "string", None), ("top", 4, R, "string", None),
        ("phase", 10, O, "enum:Phase", None), ("loss_weight", 5, R, "float", None),
        ("param", 6, R, "ParamSpec", None), ("blobs", 7, R, "BlobProto", None),
        ("propagate_down", 11, R, "bool", None),
        ("include", 8, R, "NetStateRule", None), ("exclude", 9, R, "NetStateRule", None),
        ("transform_param", 100, O, "TransformationParameter", None),
        ("batch_norm_param", 139, O, "BatchNormParameter", None),
        ("bias_param", 141, O, "BiasParameter", None),
        ("concat_param", 104, O, "ConcatParameter", None),
        ("convolution_param", 106, O, "ConvolutionParameter", None),
        ("crop_param", 144, O, "CropParameter", None),
        ("dropout_param", 108, O, "DropoutParameter", None),
        ("eltwise_param", 110, O, "EltwiseParameter", None),
        ("elu_param", 140, O, "ELUParameter", None),
        ("exp_param", 111, O, "ExpParameter", None),
        ("flatten_param", 135, O, "FlattenParameter", None),
        ("inner_product_param", 117, O, "InnerProductParameter", None),
        ("input_param", 143, O, "InputParameter", None),
        ("log_param", 134, O, "LogParameter", None),
        ("lrn_param", 118, O, "LRNParameter", None),
        ("pooling_param", 121, O, "PoolingParameter", None),
        ("power_param", 122, O, "PowerParameter", None),
        ("prelu_param", 131, O, "PReLUParameter", None),
        ("relu_param", 123, O, "ReLUParameter", None),
        ("reshape_param", 133, O, "ReshapeParameter", None),
        ("scale_param", 142, O, "ScaleParameter", None),
        ("sigmoid_param", 124, O, "SigmoidParameter", None),
        ("slice_param", 126, O, "SliceParameter", None),
        ("softmax_param", 125, O, "SoftmaxParameter", None),
        ("tanh_param", 127, O, "TanHParameter", None),
    ],
    "V1LayerParameter": [
        ("bottom", 2, R, "string", None), ("top", 3, R, "string", None),
        ("name", 4, O, "string", None), ("include", 32, R, "NetStateRule", None),
        ("exclude", 33, R, "NetStateRule", None), ("type", 5, O, "enum:V1LayerType", None),
        ("blobs", 6, R, "BlobProto", None), ("param", 1001, R, "string", None),
        ("blobs_lr", 7, R, "float", None), ("weight_decay", 8, R, "float", None),
        ("loss_weight", 35, R, "float", None),
        ("concat_param", 9, O, "ConcatParameter", None),
        ("convolution_param", 10, O, "ConvolutionParameter", None),
        ("dropout_param", 12, O, "DropoutParameter", None),
        ("eltwise_param", 24, O, "EltwiseParameter", None),
        ("exp_param", 41, O, "ExpParameter", None),
        ("inner_product_param", 17, O, "InnerProductParameter", None),
        ("lrn_param", 18, O, "LRNParameter", None),
        ("pooling_param", 19, O, "PoolingParameter", None),
        ("power_param", 21, O, "PowerParameter", None),
        ("relu_param", 30, O, "ReLUParameter", None),
        ("sigmoid_param", 38, O, "SigmoidParameter", None),
        ("slice_param", 31, O, "SliceParameter", None),
        ("softmax_param", 39, O, "SoftmaxParameter", None),
        ("tanh_param", 37, O, "TanHParameter", None),
        ("transform_param", 36, O, "TransformationParameter", None),
    ],
}


def _build():
    fdp = descriptor_pb2.FileDescriptorProto(name="caffevis_caffe.proto", package="caffe",
                                             syntax="proto2")
    for name, values in ENUMS.items():
        # enum values share their parent's scope, so each enum gets a holder message
        enum = fdp.message_type.add(name="Enum" + name).enum_type.add(name=name)
        for vname, number in values:
            enum.value.add(name=vname, number=number)
    for name, fields in MESSAGES.items():
        msg = fdp.message_type.add(name=name)
        for fname, number, label, ftype, default in fields:
            field = msg.field.add(name=fname, number=number, label=label)
            if ftype in _SCALAR:
                field.type = _SCALAR[ftype]
                if label == _REP and ftype not in ("string", "bytes"):
                    field.options.packed = ftype != "bool" and name in ("BlobShape", "BlobProto")
            elif ftype.startswith("enum:"):
                field.type = _F.TYPE_ENUM
                field.type_name = ".caffe.Enum%s.%s" % (ftype[5:], ftype[5:])
            else:
                field.type = _F.TYPE_MESSAGE
                field.type_name = ".caffe." + ftype
            if default is not None:
                field.default_value = default
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    fd = pool.FindFileByName(fdp.name)
    return {name: _get_class(fd.message_types_by_name[name]) for name in MESSAGES}


_CLASSES = _build()
NetParameter = _CLASSES["NetParameter"]
BlobProto = _CLASSES["BlobProto"]
LayerParameter = _CLASSES["LayerParameter"]


# Field names of caffe.proto that caffevis reads past (training, data and solver settings,
# layers it does not convert). A prototxt field in neither this set nor the schema above is
# almost certainly a typo: the reader warns about it, where Caffe would refuse the file.
OTHER_CAFFE_FIELDS = frozenset("""
weight_filler bias_filler filler value min max mean std sparse variance_norm share_mode
data_param source batch_size rand_skip backend prefetch mean_file crop_size mirror force_color
force_gray image_data_param shuffle new_height new_width is_color root_folder hdf5_data_param
hdf5_output_param file_name memory_data_param channels height width window_data_param fg_threshold
bg_threshold fg_fraction context_pad crop_mode cache_images dummy_data_param data_filler num
accuracy_param top_k ignore_label loss_param normalize normalization argmax_param out_max_val
bias_param contrastive_loss_param margin legacy_version crop_param offset embed_param input_dim
exp_param base log_param mvn_param normalize_variance across_channels eps parameter_param
python_param module layer param_str share_in_parallel recurrent_param expose_hidden
reduction_param operation coeff spp_param pyramid_height slice_param slice_dim slice_point
threshold_param threshold tile_param tiles hinge_loss_param norm infogain_loss_param
stable_prod_grad debug_info state force_backward layers blobs_lr weight_decay blob_share_mode
phase level stage not_stage min_level max_level engine axis num_axes end_axis concat_dim
round_mode deconv_ignore propagate_down loss_weight include exclude transform_param scale
mean_value lr_mult decay_mult name type bottom top input input_shape dim layer num_output
""".split())


def known_field_names():
    """Every field name of the schema above plus :data:`OTHER_CAFFE_FIELDS`."""
    names = set(OTHER_CAFFE_FIELDS)
    for fields in MESSAGES.values():
        names.update(f[0] for f in fields)
    return names
