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
find_package(Torch REQUIRED)
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
find_path(HOLO_NCCL_INCLUDE_DIR nccl.h
          HINTS ENV NCCL_HOME ENV CUDA_HOME /usr/local/cuda PATH_SUFFIXES include)
find_library(HOLO_NCCL_LIBRARY nccl
             HINTS ENV NCCL_HOME ENV CUDA_HOME /usr/local/cuda PATH_SUFFIXES lib64 lib)
find_package(CUDAToolkit QUIET)
set(HOLO_WITH_NCCL OFF)
if(HOLO_NCCL_INCLUDE_DIR AND HOLO_NCCL_LIBRARY AND CUDAToolkit_FOUND)
  set(HOLO_WITH_NCCL ON)
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
message(STATUS "holo: torch ${Torch_VERSION} CUDA=${HOLO_WITH_CUDA} NCCL=${HOLO_WITH_NCCL} "
               "NVDEC=${HOLO_WITH_NVDEC} MPI=${MPI_CXX_VERSION} HDF5=${HDF5_VERSION}")

# Build facts go into a generated header, not -D flags, so every target shares one PCH.
configure_file(${CMAKE_CURRENT_LIST_DIR}/build_config.h.in
               ${CMAKE_BINARY_DIR}/generated/holo/build_config.h @ONLY)
