# Finds Holo's dependencies. Required: LibTorch, OpenMPI, FFmpeg, HDF5, TOML++, CLI11, spdlog,
# nlohmann-json, GoogleTest. Detected, never required: CUDA (through a CUDA-enabled LibTorch),
# NCCL, NVDEC. A CPU build links no GPU library.

find_program(HOLO_CCACHE ccache)
if(HOLO_CCACHE)
  # PCH-friendly ccache: the precompiled header changes only with its inputs.
  set(CMAKE_CXX_COMPILER_LAUNCHER
      ${CMAKE_COMMAND} -E env
      "CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime"
      ${HOLO_CCACHE})
  message(STATUS "holo: ccache ${HOLO_CCACHE}")
endif()

find_package(Threads REQUIRED)

# Which LibTorch. By default find_package's usual search: CMAKE_PREFIX_PATH, then the system
# (Debian's libtorch-dev, a CPU build). For a GPU build, a CUDA LibTorch the user already has
# (README.md, "GPU build"):
#   -DHOLO_TORCH_PYTHON=python3   the LibTorch inside that Python's PyTorch
#                                 (torch.utils.cmake_prefix_path), and its nvidia-nccl wheel's NCCL
#   -DHOLO_TORCH_DIR=DIR          torch.utils.cmake_prefix_path, an unpacked LibTorch archive, or
#                                 the folder holding TorchConfig.cmake
# Either one is searched alone (no fallback to the system's LibTorch).
set(HOLO_TORCH_DIR "" CACHE PATH
    "LibTorch to build against: torch.utils.cmake_prefix_path, a LibTorch folder or its TorchConfig.cmake folder; empty: the usual search")
set(HOLO_TORCH_PYTHON "" CACHE STRING
    "Python (name or path) whose PyTorch provides LibTorch, and NCCL through its nvidia-nccl wheel; empty: not used")
set(_holo_torch_dir "${HOLO_TORCH_DIR}")
set(_holo_nccl_hint "")
if(HOLO_TORCH_PYTHON)
  find_program(_holo_python NAMES "${HOLO_TORCH_PYTHON}" NO_CACHE)
  if(NOT _holo_python)
    message(FATAL_ERROR "HOLO_TORCH_PYTHON=${HOLO_TORCH_PYTHON}: no such program")
  endif()
  execute_process(COMMAND "${_holo_python}" -c "import torch; print(torch.utils.cmake_prefix_path)"
                  OUTPUT_VARIABLE _holo_prefix ERROR_VARIABLE _holo_err RESULT_VARIABLE _holo_rc
                  OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT _holo_rc EQUAL 0)
    message(FATAL_ERROR "HOLO_TORCH_PYTHON=${_holo_python} cannot import torch (${_holo_rc}): ${_holo_err}")
  endif()
  if(NOT _holo_torch_dir)
    set(_holo_torch_dir "${_holo_prefix}")
  endif()
  execute_process(COMMAND "${_holo_python}" -c "import nvidia.nccl; print(list(nvidia.nccl.__path__)[0])"
                  OUTPUT_VARIABLE _holo_nccl_hint ERROR_QUIET OUTPUT_STRIP_TRAILING_WHITESPACE)
endif()
if(_holo_torch_dir)
  get_filename_component(_holo_torch_dir "${_holo_torch_dir}" REALPATH)
  # Torch_DIR and Caffe2_DIR cached by an earlier configure against another LibTorch would win
  # over the paths given here.
  foreach(_holo_var Torch_DIR Caffe2_DIR)
    if(${_holo_var})
      get_filename_component(_holo_cached "${${_holo_var}}" REALPATH)
      string(FIND "${_holo_cached}" "${_holo_torch_dir}" _holo_at)
      if(NOT _holo_at EQUAL 0)
        unset(${_holo_var} CACHE)
      endif()
    endif()
  endforeach()
  find_package(Torch QUIET PATHS "${_holo_torch_dir}" "${_holo_torch_dir}/share/cmake" NO_DEFAULT_PATH)
  if(NOT Torch_FOUND)
    message(FATAL_ERROR "no LibTorch (TorchConfig.cmake) in ${_holo_torch_dir}: give HOLO_TORCH_DIR as "
                        "torch.utils.cmake_prefix_path, an unpacked LibTorch or the folder of TorchConfig.cmake, "
                        "or HOLO_TORCH_PYTHON as a Python with PyTorch")
  endif()
  message(STATUS "holo: LibTorch from ${Torch_DIR}")
else()
  find_package(Torch REQUIRED)
endif()
find_package(MPI REQUIRED COMPONENTS CXX)
find_package(HDF5 REQUIRED COMPONENTS C)
find_package(PkgConfig REQUIRED)
pkg_check_modules(FFMPEG REQUIRED IMPORTED_TARGET libavformat libavcodec libavutil libswscale)
pkg_check_modules(TOMLPP REQUIRED IMPORTED_TARGET tomlplusplus)
find_package(CLI11 CONFIG REQUIRED)
find_package(spdlog CONFIG REQUIRED)
find_package(fmt CONFIG REQUIRED)
find_package(nlohmann_json CONFIG REQUIRED)
find_package(GTest CONFIG REQUIRED)

# Torch's CMake config adds -D_GLIBCXX_USE_CXX11_ABI and friends through TORCH_CXX_FLAGS.
set(CMAKE_CXX_FLAGS "${CMAKE_CXX_FLAGS} ${TORCH_CXX_FLAGS}")

# PyTorch's wheels ship {fmt} headers of their own (a newer major version) inside LibTorch's
# include directory, where they would shadow the system {fmt} that spdlog was built against. A
# directory holding only the system's fmt/ goes first on every include path then.
foreach(_dir IN LISTS TORCH_INCLUDE_DIRS)
  if(EXISTS "${_dir}/fmt/core.h" AND NOT HOLO_FMT_FIRST)
    get_target_property(_fmt_dirs fmt::fmt INTERFACE_INCLUDE_DIRECTORIES)
    find_path(HOLO_SYSTEM_FMT_DIR fmt/core.h PATHS ${_fmt_dirs} /usr/include NO_DEFAULT_PATH)
    set(HOLO_FMT_FIRST ${CMAKE_BINARY_DIR}/fmt-first)
    file(MAKE_DIRECTORY ${HOLO_FMT_FIRST})
    file(CREATE_LINK ${HOLO_SYSTEM_FMT_DIR}/fmt ${HOLO_FMT_FIRST}/fmt SYMBOLIC)
    include_directories(BEFORE ${HOLO_FMT_FIRST})
    message(STATUS "holo: LibTorch's own {fmt} in ${_dir} is shadowed by ${HOLO_SYSTEM_FMT_DIR}/fmt (spdlog's)")
  endif()
endforeach()

# CUDA: only through a CUDA-enabled LibTorch (the GPU machine's PyTorch).
set(HOLO_WITH_CUDA OFF)
if(TARGET torch_cuda OR TORCH_CUDA_LIBRARIES OR CAFFE2_USE_CUDA)
  set(HOLO_WITH_CUDA ON)
endif()

# NCCL: headers are looked for next to the CUDA toolkit. The NCCL communicator compiles against
# them and loads libnccl and the CUDA runtime with dlopen only when a CUDA run asks for it
# (docs/distributed.md), so the CPU build never needs either at run time.
# PyTorch's nvidia-nccl wheel (HOLO_TORCH_PYTHON) is looked in first, then NCCL_HOME, CUDA_HOME.
find_path(HOLO_NCCL_INCLUDE_DIR nccl.h
          HINTS ${_holo_nccl_hint} ENV NCCL_HOME ENV CUDA_HOME /usr/local/cuda PATH_SUFFIXES include)
find_library(HOLO_NCCL_LIBRARY NAMES nccl libnccl.so.2
             HINTS ${_holo_nccl_hint} ENV NCCL_HOME ENV CUDA_HOME /usr/local/cuda PATH_SUFFIXES lib64 lib)
find_package(CUDAToolkit QUIET)
set(HOLO_WITH_NCCL OFF)
set(HOLO_NCCL_VERSION "")
if(HOLO_NCCL_INCLUDE_DIR AND HOLO_NCCL_LIBRARY AND CUDAToolkit_FOUND)
  set(HOLO_WITH_NCCL ON)
  file(STRINGS "${HOLO_NCCL_INCLUDE_DIR}/nccl.h" _holo_nccl_defines REGEX "^#define NCCL_(MAJOR|MINOR|PATCH) ")
  foreach(_part MAJOR MINOR PATCH)
    string(REGEX MATCH "NCCL_${_part} +([0-9]+)" _m "${_holo_nccl_defines}")
    set(_holo_nccl_${_part} "${CMAKE_MATCH_1}")
  endforeach()
  set(HOLO_NCCL_VERSION "${_holo_nccl_MAJOR}.${_holo_nccl_MINOR}.${_holo_nccl_PATCH}")
endif()

# NVDEC goes through libavcodec's CUDA hwaccel: it needs the hwcontext header at build time and a
# driver at run time (checked then, with a logged reason when absent).
include(CheckIncludeFileCXX)
set(CMAKE_REQUIRED_INCLUDES ${FFMPEG_INCLUDE_DIRS})
check_include_file_cxx("libavutil/hwcontext.h" HOLO_HAVE_HWCONTEXT)
unset(CMAKE_REQUIRED_INCLUDES)
set(HOLO_WITH_NVDEC OFF)
if(HOLO_HAVE_HWCONTEXT)
  set(HOLO_WITH_NVDEC ON)
endif()

set(HOLO_WITH_MPI ON)
set(HOLO_WITH_HDF5 ON)
# For `holo version`: where LibTorch came from and the CUDA toolkit found when Holo was
# configured (LibTorch itself may have been built for another CUDA).
set(HOLO_TORCH_CUDA_VERSION "")
if(HOLO_WITH_CUDA)
  if(CUDAToolkit_VERSION)
    set(HOLO_TORCH_CUDA_VERSION "${CUDAToolkit_VERSION}")
  elseif(CUDA_VERSION)
    set(HOLO_TORCH_CUDA_VERSION "${CUDA_VERSION}")
  endif()
endif()
get_filename_component(HOLO_TORCH_CONFIG_DIR "${Torch_DIR}" REALPATH)
message(STATUS "holo: torch ${Torch_VERSION} CUDA=${HOLO_WITH_CUDA} NCCL=${HOLO_WITH_NCCL} "
               "NVDEC=${HOLO_WITH_NVDEC} MPI=${MPI_CXX_VERSION} HDF5=${HDF5_VERSION}")

# Build facts go into a generated header, not -D flags, so every target shares one PCH.
configure_file(${CMAKE_CURRENT_LIST_DIR}/build_config.h.in
               ${CMAKE_BINARY_DIR}/generated/holo/build_config.h @ONLY)
