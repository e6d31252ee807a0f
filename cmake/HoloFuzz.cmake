# The libFuzzer build (-DHOLO_FUZZ=ON, docs/fuzzing.md): clang, and only what the targets in
# tests/fuzz need (holo::core, holo::pipeline, holo::checkpoints), never the rest of Holo. Holo's
# code is compiled with the fuzzer's coverage instrumentation, AddressSanitizer and
# UndefinedBehaviorSanitizer; LibTorch, FFmpeg and the other libraries are not instrumented, as in
# the sanitizer builds (scripts/sanitize.sh). Included by the top-level CMakeLists.txt in place of
# its list of folders.

if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "HOLO_FUZZ needs clang (libFuzzer): configure with "
                      "-DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ "
                      "(`make fuzz` does), not ${CMAKE_CXX_COMPILER_ID}")
endif()

# Any report stops the run. _GLIBCXX_ASSERTIONS turns an out-of-range operator[] on a standard
# container into an abort the fuzzer sees, even where AddressSanitizer would not (inside the
# vector's capacity); it does not change the library's ABI, so LibTorch links as usual.
# -fno-sanitize=enum: FFmpeg's C structs hold enums (a frame's colour space, a codec id) that C
# lets carry any int, and a damaged stream's value is passed through as read; Holo hands them
# back to FFmpeg, which checks them.
add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize=enum
                    -fno-omit-frame-pointer -fno-sanitize-recover=all -D_GLIBCXX_ASSERTIONS)
add_link_options(-fsanitize=address,undefined)

# holo_fuzzer(NAME recipe SOURCES recipe_fuzz.cc DEPS holo::core)
# One libFuzzer executable, <NAME>_fuzz, linked with libFuzzer's main. The `holo_fuzzers` target
# builds them all.
function(holo_fuzzer)
  cmake_parse_arguments(A "" "NAME" "SOURCES;DEPS" ${ARGN})
  set(target ${A_NAME}_fuzz)
  add_executable(${target} ${A_SOURCES})
  target_include_directories(${target} PRIVATE ${PROJECT_SOURCE_DIR})
  target_link_libraries(${target} PRIVATE ${A_DEPS})
  target_link_options(${target} PRIVATE -fsanitize=fuzzer)
  add_dependencies(holo_fuzzers ${target})
endfunction()

add_custom_target(holo_fuzzers)
holo_make_torch_pch()
foreach(dir core pipeline checkpoints tests/fuzz)
  add_subdirectory(${dir})
endforeach()

# No target uses holo::pipeline's tensor code (clips, the loader, the feature store): its
# sources are left out of this build, which saves minutes of compiling against LibTorch on every
# run.
get_directory_property(_holo_fuzz_unused DIRECTORY pipeline DEFINITION holo_pipeline_torch_sources)
list(TRANSFORM _holo_fuzz_unused PREPEND ${PROJECT_SOURCE_DIR}/pipeline/)
if(_holo_fuzz_unused)
  set_source_files_properties(${_holo_fuzz_unused} DIRECTORY pipeline
                              PROPERTIES HEADER_FILE_ONLY ON)
endif()
