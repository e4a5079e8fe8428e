from setuptools import find_packages, setup

with open("README.md", encoding="utf-8") as f:
    long_description = f.read()

setup(
    name="precomputed-tif",
    version="2.0.0",
    description="Convert TIFF z-stacks into multi-resolution Neuroglancer precomputed volumes and serve them",
    long_description=long_description,
    long_description_content_type="text/markdown",
    license="MIT",
    packages=find_packages(include=["precomputed_tif", "precomputed_tif.*"]),
    python_requires=">=3.10",
    install_requires=[
        "numpy>=1.23",
        "tifffile>=2023.3.15",
        "imagecodecs>=2023.1.23",
        "zarr>=2.16",  # 3 (Python 3.11+) for OME-Zarr 0.5
        "google-crc32c>=1.5",
        "numcodecs>=0.11",
        "scikit-image>=0.20",
        "tqdm>=4.60",
        "compressed-segmentation>=2.2",
        "zmesh>=1.7",
        "DracoPy>=1.3",
    ],
    extras_require={
        "view": ["neuroglancer>=2.38", "selenium>=4.10"],
        "dask": ["distributed>=2023.1"],
        "test": ["pytest>=7", "tensorstore>=0.1.60", "psutil>=5.9", "gunicorn>=21", "neuroglancer>=2.38", "Pillow>=9",
                 "selenium>=4.10", "distributed>=2023.1", "cloud-volume>=8", "ome-types>=0.5", "bioio>=1.0",
                 "bioio-ome-tiff>=1.0", "ome-zarr-models>=0.1",
                 "aiohttp>=3.8"],
    },
    entry_points={
        "console_scripts": [
            "precomputed-tif=precomputed_tif.main:main",
            "precomputed-webserver=precomputed_tif.cors_webserver:main",
            "precomputed-write-points=precomputed_tif.write_points:main",
            "precomputed-mesh=precomputed_tif.mesh_cli:main",
            "precomputed-screenshot=precomputed_tif.screenshot:main",
            "blockfs-info=precomputed_tif.blockfs.cli:info_main",
            "blockfs2tif=precomputed_tif.blockfs.cli:tif_main",
        ],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Image Processing",
    ],
)
