# Every dependency is a Debian package installed by scripts/setup.sh; nothing is vendored.
find_package(nlohmann_json 3.10 REQUIRED)
find_package(CLI11 REQUIRED)
find_package(Threads REQUIRED)
find_package(OpenMP REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(TOMLPP REQUIRED IMPORTED_TARGET tomlplusplus)
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
pkg_check_modules(UTF8PROC REQUIRED IMPORTED_TARGET libutf8proc)

# OpenBLAS through its CBLAS interface. Debian installs the pthread flavour as an alternative of
# libblas; link OpenBLAS explicitly so the reference BLAS is never picked up by accident.
find_path(ESCALE_CBLAS_INCLUDE cblas.h PATHS /usr/include/x86_64-linux-gnu/openblas-pthread
          /usr/include/aarch64-linux-gnu/openblas-pthread /usr/include/openblas NO_DEFAULT_PATH)
find_library(ESCALE_OPENBLAS NAMES openblas PATHS /usr/lib/x86_64-linux-gnu/openblas-pthread
             /usr/lib/aarch64-linux-gnu/openblas-pthread)
if(NOT ESCALE_CBLAS_INCLUDE OR NOT ESCALE_OPENBLAS)
  message(FATAL_ERROR "OpenBLAS not found: install libopenblas-dev (scripts/setup.sh does this)")
endif()

add_library(escale_deps INTERFACE)
add_library(escale::deps ALIAS escale_deps)
# SYSTEM: its headers are not ours to warn about (clang flags their C99 _Complex in C++).
target_include_directories(escale_deps SYSTEM INTERFACE ${ESCALE_CBLAS_INCLUDE})
target_link_libraries(escale_deps INTERFACE nlohmann_json::nlohmann_json PkgConfig::TOMLPP
  PkgConfig::PCRE2 PkgConfig::UTF8PROC ${ESCALE_OPENBLAS} OpenMP::OpenMP_CXX Threads::Threads)

if(ESCALE_CUDA)
  include(CheckLanguage)
  check_language(CUDA)
  if(NOT CMAKE_CUDA_COMPILER)
    message(FATAL_ERROR "ESCALE_CUDA=ON but no CUDA compiler was found; set CUDACXX or turn it off")
  endif()
  enable_language(CUDA)
  find_package(CUDAToolkit REQUIRED)
  set(CMAKE_CUDA_ARCHITECTURES 80 90)
  target_link_libraries(escale_deps INTERFACE CUDA::cudart CUDA::cublas CUDA::cublasLt)
  target_compile_definitions(escale_deps INTERFACE ESCALE_HAVE_CUDA=1)
  message(WARNING "ESCALE_CUDA=ON links the CUDA toolkit, but the CUDA backend is not written yet: "
                  "this build computes on the CPU only (docs/status.md)")
endif()
