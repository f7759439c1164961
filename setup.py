import glob

from setuptools import find_packages, setup

setup(
    name="caffevis",
    version="0.1.0",
    description="Caffe-faithful Deep Visualization Toolbox and Zeiler & Fergus deconvnet on ONNX Runtime",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["caffevis", "caffevis.*"]),
    # the 1000 ILSVRC 2012 class names and onnxruntime's CUDA kernel table (caffevis/data/)
    package_data={"caffevis": ["data/*.txt", "data/*.json"], "caffevis.viewer.web": ["page.html"]},
    python_requires=">=3.9",
    install_requires=[
        "numpy>=1.23",
        "scipy>=1.9",
        "onnxruntime-gpu==1.31.1",  # pinned: the CUDA kernel coverage was checked against this version
        "onnx>=1.14",
        "opencv-python>=4.7",
        "h5py>=3.7",
        "pyyaml>=6.0",
        "protobuf>=4.21",
        "tqdm>=4.64",
        "dask[distributed]>=2023.1",
        "starlette>=0.37",
        "uvicorn>=0.29",
        "websockets>=12",
    ],
    extras_require={
        "test": ["pytest>=7", "hypothesis>=6", "playwright>=1.40"],
        # PyTorch peers and fixture export (tools/bench.py, tools/export_torchvision.py);
        # torch is never a runtime dependency
        "bench": ["torch==2.13.0", "torchvision==0.28.0", "captum==0.9.0"],
        "torch": ["torch==2.13.0", "torchvision==0.28.0", "captum==0.9.0"],
    },
    entry_points={"console_scripts": ["caffevis=caffevis.cli:main"]},
    # settings files and the trained LeNet (the embedded default) for non-editable installs
    data_files=[("share/caffevis/settings", glob.glob("settings/*.yaml")),
                ("share/caffevis/model_zoo/lenet", glob.glob("model_zoo/lenet/*"))],
)
