#include "launcher/cli.h"

int main(int argc, char** argv) { return holo::cli::run(argc, argv); }
